//! `rehost-helper`: what `rehost inspect|convert ssh://…` sends to the server and runs
//! there, built static by scripts/build-static. It is the helper's side of the full
//! rehost (`rehost __remote`) without the registry, runtime and TLS code, so a third of
//! its size: it crosses the network on every run.

use converter::source::remote::{helper, HELPER_SUBCOMMAND};

fn main() -> std::process::ExitCode {
    // Invoked as the full rehost is, `rehost-helper __remote [--probe]`, so either can
    // serve.
    let args: Vec<_> = std::env::args_os()
        .skip(1)
        .skip_while(|a| a == HELPER_SUBCOMMAND)
        .collect();
    helper::main(args)
}

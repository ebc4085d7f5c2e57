fn main() {
    eprintln!("rehost-init: not built yet");
    std::process::exit(1);
}

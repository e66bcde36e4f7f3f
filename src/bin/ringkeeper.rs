fn main() {
    eprintln!("ringkeeper: server not built yet");
    std::process::exit(1);
}

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    syncguard::cli::main()
}

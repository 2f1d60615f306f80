#![forbid(unsafe_code)]

/// mimalloc: the request path allocates many small, short-lived buffers (bodies, headers, JSON),
/// where it measurably beats the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    syncguard::cli::main()
}

//! The `arc` binary: parse, run, print one error, exit.

fn main() -> std::process::ExitCode {
    arc_hub::cli::run(std::env::args_os().skip(1))
}

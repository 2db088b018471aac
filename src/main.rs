//! The `redshift-exporter` binary: parse the command line, run, map the result to an exit code.

fn main() -> std::process::ExitCode {
    redshift_exporter::cli::main()
}

use std::process::ExitCode;

use clap::Parser;
use smtp_operator::cli::{Cli, Command};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => {
            print!("{}", smtp_operator::crdgen::crd_yaml());
            ExitCode::SUCCESS
        }
        Command::Check(args) => smtp_operator::check_cmd::run(args).await,
        Command::Relay(args) => {
            smtp_operator::telemetry::init();
            match smtp_operator::relay::run(args).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = format!("{e:#}"), "smtp-operator relay stopped");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run(args) => {
            smtp_operator::telemetry::init();
            match smtp_operator::controller::run(args).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = format!("{e:#}"), "smtp-operator stopped");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

//! `hsm-keys`: the key ceremony of the issuer master keys, and the list of keys with their check
//! values. Components are read one at a time from files or from the terminal (echo off), never
//! from argv or the environment; the user PIN comes from a file. Prints check values only.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hsm::ceremony::{AdminSession, KeyBytes, parse_component};
use hsm::pkcs11::{Module, Pkcs11Config, SOFTHSM2_MODULE};
use zeroize::Zeroizing;

#[derive(Parser)]
#[command(about = "Issuer master key ceremony for the authorizer's PKCS#11 token")]
struct Cli {
    /// PKCS#11 library.
    #[arg(long, default_value = SOFTHSM2_MODULE)]
    module: PathBuf,
    /// Label of the token.
    #[arg(long)]
    token: String,
    /// File holding the user PIN (first line). Keep it 0600.
    #[arg(long)]
    pin_file: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Import a key from 2 or 3 clear components (XORed), printing every check value.
    Import {
        /// Label of the new key (the key set's `key_label`).
        #[arg(long)]
        label: String,
        /// Number of components (2 or 3) when they are typed at the terminal.
        #[arg(long, default_value_t = 2)]
        components: usize,
        /// Read components from these files (one per custodian) instead of the terminal.
        #[arg(long = "component-file")]
        component_files: Vec<PathBuf>,
    },
    /// List the token's secret keys with their check values and protection flags.
    List,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hsm-keys: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    let pin = Pkcs11Config::read_pin_file(&cli.pin_file)?;
    let module = Module::get(&cli.module)?;
    let admin = AdminSession::open(module, &cli.token, &pin)?;
    match cli.command {
        Command::List => {
            println!(
                "{:<32} {:<8} {:<6} sensitive extractable encrypt",
                "label", "type", "kcv"
            );
            for k in admin.list()? {
                println!(
                    "{:<32} {:<8} {:<6} {:<9} {:<11} {}",
                    k.label,
                    k.key_type,
                    k.kcv.map(hex::encode_upper).unwrap_or_else(|| "-".into()),
                    k.sensitive,
                    k.extractable,
                    k.encrypt
                );
            }
        }
        Command::Import {
            label,
            components,
            component_files,
        } => {
            let comps = if component_files.is_empty() {
                read_from_terminal(components)?
            } else {
                component_files
                    .iter()
                    .map(|f| {
                        let text = Zeroizing::new(std::fs::read_to_string(f).map_err(|e| {
                            format!("cannot read component file {}: {e}", f.display())
                        })?);
                        parse_component(&text).map_err(|e| format!("{}: {e}", f.display()))
                    })
                    .collect::<Result<Vec<KeyBytes>, String>>()?
            };
            import(&admin, &label, &comps)?;
        }
    }
    Ok(())
}

fn import(admin: &AdminSession, label: &str, comps: &[KeyBytes]) -> Result<(), hsm::HsmError> {
    let report = admin.import_from_components(label, comps)?;
    for (i, kcv) in report.component_kcvs.iter().enumerate() {
        println!("component {} KCV {}", i + 1, hex::encode_upper(kcv));
    }
    println!(
        "key {:?} imported (sensitive, non-extractable, derive only) KCV {}",
        report.label,
        hex::encode_upper(report.kcv)
    );
    Ok(())
}

/// One component per custodian, typed with echo off when stdin is a terminal.
fn read_from_terminal(n: usize) -> Result<Vec<KeyBytes>, Box<dyn std::error::Error>> {
    let stdin = std::io::stdin();
    let tty = stdin.is_terminal();
    let mut out = Vec::with_capacity(n);
    for i in 1..=n {
        eprint!("component {i} of {n} (32 hex digits): ");
        std::io::stderr().flush()?;
        if tty {
            stty("-echo");
        }
        let mut line = Zeroizing::new(String::new());
        let read = stdin.lock().read_line(&mut line);
        if tty {
            stty("echo");
            eprintln!();
        }
        read?;
        out.push(parse_component(&line)?);
    }
    Ok(out)
}

fn stty(arg: &str) {
    // stty acts on its stdin, which it inherits: our terminal.
    let _ = std::process::Command::new("stty").arg(arg).status();
}

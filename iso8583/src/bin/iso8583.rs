//! `iso8583`: decode one message to JSON, or encode JSON to one message, for engineers reading
//! traces. Reads stdin, writes stdout. Invalid input exits with code 2 and one line on stderr that
//! names the field and the offset. It prints field values (it is a trace tool run by hand on test
//! or masked data); it must never be wired into the daemon's logs.
//!
//! `decode` masks the secrets unless `--show-secrets` is given: DE 2 (PAN) by the project's rule
//! (`iso8583::mask`: first 6 and last 4 digits from 13 digits on, else all `*`), DE 35 (track 2),
//! DE 45 (track 1) and DE 52 (PIN block, hex) wholly, each character replaced by `*` (the length
//! stays visible). Masked output cannot be encoded back into the same message.

#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::process::ExitCode;

use bytes::Bytes;
use clap::{Parser, Subcommand};
use iso8583::{Dialect, Format, Message, MessageBuilder, Mti};

#[derive(Parser)]
#[command(
    name = "iso8583",
    about = "Decode and encode ISO 8583 messages (no length frame)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Read one message from stdin and print it as JSON.
    Decode {
        /// Built-in dialect (ascii, mastercard) or path to a dialect file.
        #[arg(long)]
        dialect: String,
        /// Stdin is hex text instead of raw bytes.
        #[arg(long)]
        hex: bool,
        /// Print DE 2, 35, 45 and 52 as they are (masked by default).
        #[arg(long)]
        show_secrets: bool,
    },
    /// Read JSON {"mti":..,"fields":{..}} from stdin and write the message.
    Encode {
        /// Built-in dialect (ascii, mastercard) or path to a dialect file.
        #[arg(long)]
        dialect: String,
        /// Write uppercase hex text instead of raw bytes.
        #[arg(long)]
        hex: bool,
    },
}

/// An error for the one-line report; exit code 2 for bad input, 1 for the rest.
struct Failure {
    code: u8,
    line: String,
}

fn bad_input(line: impl Into<String>) -> Failure {
    Failure {
        code: 2,
        line: line.into(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("iso8583: {}", f.line);
            ExitCode::from(f.code)
        }
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    let mut input = Vec::new();
    std::io::stdin()
        .read_to_end(&mut input)
        .map_err(|e| Failure {
            code: 1,
            line: format!("cannot read stdin: {e}"),
        })?;
    let (name, hex_io) = match &cli.command {
        Command::Decode { dialect, hex, .. } | Command::Encode { dialect, hex } => (dialect, *hex),
    };
    let dialect = Dialect::by_name_or_path(name).map_err(|e| bad_input(e.to_string()))?;
    let mut out = std::io::stdout().lock();
    let written = match cli.command {
        Command::Decode { show_secrets, .. } => {
            let bytes = if hex_io { from_hex(&input)? } else { input };
            let json = decode(&dialect, bytes, show_secrets)?;
            out.write_all(json.as_bytes())
                .and_then(|()| out.write_all(b"\n"))
        }
        Command::Encode { .. } => {
            let bytes = encode(&dialect, &input)?;
            if hex_io {
                out.write_all(hex::encode_upper(&bytes).as_bytes())
                    .and_then(|()| out.write_all(b"\n"))
            } else {
                out.write_all(&bytes)
            }
        }
    };
    written.map_err(|e| Failure {
        code: 1,
        line: format!("cannot write stdout: {e}"),
    })
}

fn from_hex(input: &[u8]) -> Result<Vec<u8>, Failure> {
    let text: Vec<u8> = input
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    hex::decode(&text)
        .map_err(|e| bad_input(format!("input at hex character {}: {e}", hex_offset(&e))))
}

fn hex_offset(e: &hex::FromHexError) -> usize {
    match e {
        hex::FromHexError::InvalidHexCharacter { index, .. } => *index,
        _ => 0,
    }
}

/// Fields `decode` masks wholly unless asked not to: track 2, track 1, PIN block.
const MASKED_WHOLE: [usize; 3] = [35, 45, 52];

/// `text` as `decode` prints field `n` by default.
fn masked(n: usize, text: String) -> String {
    match n {
        2 => iso8583::mask::masked_pan(&text),
        _ if MASKED_WHOLE.contains(&n) => "*".repeat(text.chars().count()),
        _ => text,
    }
}

fn decode(dialect: &Dialect, bytes: Vec<u8>, show_secrets: bool) -> Result<String, Failure> {
    let msg = Message::decode(dialect, Bytes::from(bytes)).map_err(|e| bad_input(e.to_string()))?;
    let mut s = String::with_capacity(512);
    s.push_str("{\"mti\":\"");
    s.push_str(msg.mti().as_str());
    s.push_str("\",\"fields\":{");
    for (i, n) in msg.fields().iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let value = msg.field(n).unwrap_or_default();
        let is_binary = dialect.field(n).is_some_and(|f| f.format == Format::B);
        let text = if is_binary {
            hex::encode_upper(value)
        } else {
            // Character fields are validated ASCII.
            String::from_utf8_lossy(value).into_owned()
        };
        let text = if show_secrets { text } else { masked(n, text) };
        s.push_str(&format!("\"{n}\":"));
        s.push_str(&serde_json::to_string(&text).unwrap_or_default());
    }
    s.push_str("}}");
    Ok(s)
}

fn encode(dialect: &Dialect, input: &[u8]) -> Result<Vec<u8>, Failure> {
    let json: serde_json::Value = serde_json::from_slice(input).map_err(|e| {
        bad_input(format!(
            "JSON at line {} column {}: {e}",
            e.line(),
            e.column()
        ))
    })?;
    let mti = json
        .get("mti")
        .and_then(|m| m.as_str())
        .and_then(|m| Mti::new(m.as_bytes()))
        .ok_or_else(|| bad_input("JSON: \"mti\" must be a string of 4 digits"))?;
    let fields = json
        .get("fields")
        .and_then(|f| f.as_object())
        .ok_or_else(|| bad_input("JSON: \"fields\" must be an object"))?;
    let mut b = MessageBuilder::new(mti);
    for (key, value) in fields {
        let n: usize = key
            .parse()
            .ok()
            .filter(|n| (2..=iso8583::FIELD_MAX).contains(n))
            .ok_or_else(|| {
                bad_input(format!(
                    "JSON: field key {key:?} is not a field number 2..=128"
                ))
            })?;
        let text = value
            .as_str()
            .ok_or_else(|| bad_input(format!("field {n}: value must be a JSON string")))?;
        let spec = dialect.field(n).ok_or_else(|| {
            bad_input(format!(
                "field {n}: not defined by dialect `{}`",
                dialect.name()
            ))
        })?;
        if spec.format == Format::B {
            let raw = hex::decode(text).map_err(|e| {
                bad_input(format!(
                    "field {n} at hex character {}: {e}",
                    hex_offset(&e)
                ))
            })?;
            b.set(n, raw);
        } else {
            b.set(n, text.as_bytes());
        }
    }
    let bytes = b.encode(dialect).map_err(|e| bad_input(e.to_string()))?;
    Ok(bytes.to_vec())
}

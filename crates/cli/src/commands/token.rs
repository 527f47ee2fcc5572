//! `proofmill token new|hash`: tokens and the hashes a coordinator keeps of them
//! (`--prover-tokens-file`, `--admin-tokens-file`).

use crate::args::TokenCommand;
use anyhow::{Context as _, bail};
use proofmill_coordinator::{TokenHash, new_token};
use std::io::BufRead as _;

pub fn run(command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::New => {
            let token = new_token();
            println!("{token}");
            println!("{}", TokenHash::of(&token));
        }
        TokenCommand::Hash => {
            // From stdin, not an argument: arguments end up in shell history and `ps`.
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("reading the token from standard input")?;
            let token = line.trim_end_matches(['\r', '\n']);
            if token.is_empty() {
                bail!("no token on standard input");
            }
            println!("{}", TokenHash::of(token));
        }
    }
    Ok(())
}

//! The README's recipes, read as a user reads them: the `proofmill …` commands of a section's
//! first sh block, to be run as written (tests substitute only ports and addresses).
#![allow(dead_code)] // not every test binary uses every helper

use std::path::Path;

/// The `proofmill …` commands of the first sh block after `heading`, as argument lists
/// (continuation lines joined, comments dropped).
pub fn recipe(heading: &str) -> Vec<Vec<String>> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .unwrap();
    let section = readme
        .split(heading)
        .nth(1)
        .unwrap_or_else(|| panic!("README has no '{heading}'"));
    let block = section
        .split("```sh")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .unwrap_or_else(|| panic!("'{heading}' has no sh block"));
    block
        .replace("\\\n", " ")
        .lines()
        .map(|l| l.split('#').next().unwrap().trim())
        .filter_map(|l| l.strip_prefix("proofmill "))
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

/// The recipe's `proofmill SUB …` command.
pub fn command(recipe: &[Vec<String>], sub: &str) -> Vec<String> {
    recipe
        .iter()
        .find(|c| c[0] == sub)
        .cloned()
        .unwrap_or_else(|| panic!("no `proofmill {sub}` in the README's recipe: {recipe:?}"))
}

/// The value of `flag` in `args` (which must have it).
pub fn flag(args: &[String], flag: &str) -> String {
    let i = args
        .iter()
        .position(|a| a == flag)
        .unwrap_or_else(|| panic!("the README's command has no {flag}: {args:?}"));
    args[i + 1].clone()
}

/// Replaces the value of `flag` in `args` (which must have it).
pub fn set_flag(args: &mut [String], flag: &str, value: &str) {
    let i = args
        .iter()
        .position(|a| a == flag)
        .unwrap_or_else(|| panic!("the README's command has no {flag}: {args:?}"));
    args[i + 1] = value.to_string();
}

//! The config file as a user meets it: `callboard --config FILE …` takes flags from the file, the
//! command line and the environment win over it, and a bad file stops the command with an error
//! naming the file and the key, before anything runs.

use std::path::Path;
use std::process::{Command, Output};

fn callboard(config: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_callboard"));
    command
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("CALLBOARD_FORMAT");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("run callboard")
}

fn descriptor(dir: &Path) -> String {
    let path = dir.join("catalog-info.yaml");
    std::fs::write(
        &path,
        "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: configured\nspec:\n  type: service\n  lifecycle: production\n  owner: team-a\n",
    )
    .expect("write descriptor");
    path.display().to_string()
}

#[test]
fn flags_come_from_the_file_and_lose_to_the_environment_and_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = descriptor(dir.path());
    let config = dir.path().join("callboard.toml");
    // A shared key another command has (`listen`) is left to it; the [validate] table applies.
    std::fs::write(
        &config,
        "listen = \"127.0.0.1:1\"\n[validate]\nformat = \"jsonl\"\ncolor = \"never\"\n",
    )
    .expect("write");

    let from_file = callboard(&config, &["validate", &file], &[]);
    assert!(from_file.status.success(), "{from_file:?}");
    let line = String::from_utf8(from_file.stdout).expect("utf-8");
    let json: serde_json::Value = serde_json::from_str(line.trim()).expect("jsonl output from the file's format");
    assert_eq!(json["entityRef"], "component:default/configured");

    let from_env = callboard(&config, &["validate", &file], &[("CALLBOARD_FORMAT", "text")]);
    assert!(from_env.status.success(), "{from_env:?}");
    assert!(
        serde_json::from_slice::<serde_json::Value>(&from_env.stdout).is_err(),
        "text output from the environment"
    );

    let from_flag = callboard(&config, &["validate", "--format", "text", &file], &[]);
    assert!(from_flag.status.success(), "{from_flag:?}");
    assert!(
        serde_json::from_slice::<serde_json::Value>(&from_flag.stdout).is_err(),
        "text output from the flag"
    );
}

#[test]
fn a_bad_file_is_an_error_naming_the_file_and_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = descriptor(dir.path());
    let config = dir.path().join("callboard.toml");
    for (text, names) in [
        ("formt = \"jsonl\"\n", "unknown key `formt`"),
        (
            "[validate]\nlisten = \"127.0.0.1:1\"\n",
            "unknown key `listen` in [validate]",
        ),
        ("[validate]\nformat = \"yaml\"\n", "invalid value 'yaml' for '--format"),
        ("format = \n", "callboard.toml"),
    ] {
        std::fs::write(&config, text).expect("write");
        let output = callboard(&config, &["validate", &file], &[]);
        assert_eq!(output.status.code(), Some(2), "{text}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(names), "{text}: {stderr}");
        assert!(output.stdout.is_empty(), "{text}: nothing ran");
    }
    let missing = callboard(&dir.path().join("absent.toml"), &["validate", &file], &[]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("absent.toml"));
}

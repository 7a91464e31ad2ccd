//! No output of the `sync` binary shows a Secret's values (issue #11, item 4): Secrets first
//! created by a client-side `kubectl apply` (so that the live objects carry a plaintext copy in
//! the `kubectl.kubernetes.io/last-applied-configuration` annotation), then planned with
//! `--dry-run` from a repository that changes their values. Every stream is searched: stdout
//! (the text plan and `--output json`) and stderr with `RUST_LOG=debug` tracing.
//!
//! Also item 7: a file name holding a line feed does not print as a forged line.

use std::path::PathBuf;
use std::process::Stdio;

use gitops_envtest::{ControlPlane, Tool};
use gitops_examples::git_repo::GitRepository;
use tokio::io::AsyncWriteExt as _;

const OLD_PASSWORD: &str = "old-db-pass-31337";
const NEW_PASSWORD: &str = "new-db-pass-42424";
const OLD_PASSWORD_B64: &str = "b2xkLWRiLXBhc3MtMzEzMzc=";
const NEW_PASSWORD_B64: &str = "bmV3LWRiLXBhc3MtNDI0MjQ=";
/// `{"auths":{"registry.example":{"auth":base64("robot:old-reg-token-5150")}}}`, base64.
const OLD_DOCKER_CONFIG_B64: &str = "eyJhdXRocyI6eyJyZWdpc3RyeS5leGFtcGxlIjp7ImF1dGgiOiJjbTlpYjNRNmIyeGtMWEpsWnkxMGIydGxiaTAxTVRVdyJ9fX0=";
const NEW_DOCKER_CONFIG_B64: &str = "eyJhdXRocyI6eyJyZWdpc3RyeS5leGFtcGxlIjp7ImF1dGgiOiJjbTlpYjNRNmJtVjNMWEpsWnkxMGIydGxiaTAyTVRZdyJ9fX0=";

/// Every form in which a value could leak: plaintext, base64, the docker config's auth and
/// token.
const FORBIDDEN: &[&str] = &[
    OLD_PASSWORD,
    NEW_PASSWORD,
    OLD_PASSWORD_B64,
    NEW_PASSWORD_B64,
    OLD_DOCKER_CONFIG_B64,
    NEW_DOCKER_CONFIG_B64,
    "old-reg-token-5150",
    "new-reg-token-6160",
    "cm9ib3Q6b2xkLXJlZy10b2tlbi01MTUw",
    "cm9ib3Q6bmV3LXJlZy10b2tlbi02MTYw",
];

fn old_secrets(namespace: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: {namespace}\nstringData:\n  password: {OLD_PASSWORD}\n\
         ---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: pull\n  namespace: {namespace}\ntype: kubernetes.io/dockerconfigjson\ndata:\n  .dockerconfigjson: {OLD_DOCKER_CONFIG_B64}\n"
    )
}

/// The repository's version: new values, the second Secret inside a `List`.
fn new_secrets(namespace: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: {namespace}\nstringData:\n  password: {NEW_PASSWORD}\n\
         ---\napiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Secret\n  metadata:\n    name: pull\n    namespace: {namespace}\n  type: kubernetes.io/dockerconfigjson\n  data:\n    .dockerconfigjson: {NEW_DOCKER_CONFIG_B64}\n"
    )
}

async fn kubectl_apply(control_plane: &ControlPlane, manifest: &str) {
    let kubectl: PathBuf =
        tokio::task::spawn_blocking(|| gitops_envtest::tools::ensure(Tool::Kubectl))
            .await
            .unwrap()
            .expect("the pinned kubectl");
    let mut child = tokio::process::Command::new(kubectl)
        .arg("--kubeconfig")
        .arg(control_plane.kubeconfig_path())
        .args(["apply", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(manifest.as_bytes()).await.unwrap();
    drop(stdin);
    let output = child.wait_with_output().await.unwrap();
    assert!(
        output.status.success(),
        "kubectl apply: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

async fn run_sync(args: &[String]) -> Run {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_sync"))
        .args(args)
        .env("RUST_LOG", "debug")
        .env("NO_COLOR", "1")
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn assert_no_secret(what: &str, text: &str) {
    for secret in FORBIDDEN {
        assert!(!text.contains(secret), "{what} shows {secret}:\n{text}");
    }
}

#[tokio::test]
async fn a_dry_run_never_prints_the_values_of_secrets_applied_by_kubectl() {
    let control_plane = gitops_envtest::shared().await.unwrap();
    let namespace = control_plane.create_namespace("secret-leak").await.unwrap();
    kubectl_apply(control_plane, &old_secrets(&namespace)).await;

    let repository = GitRepository::create().await.unwrap();
    repository
        .commit(
            "secrets",
            &[("app/secrets.yaml", Some(&new_secrets(&namespace)))],
        )
        .await
        .unwrap();
    let flags = vec![
        "--url".to_owned(),
        repository.url(),
        "--ref".into(),
        "main".into(),
        "--subpath".into(),
        "app".into(),
        "--inventory".into(),
        format!("{namespace}/inventory"),
        "--kubeconfig".into(),
        control_plane.kubeconfig_path().display().to_string(),
        "--dry-run".into(),
    ];

    let json_run =
        run_sync(&[flags.clone(), vec!["--output".into(), "json".into()]].concat()).await;
    assert_no_secret("the JSON plan", &json_run.stdout);
    assert_no_secret("stderr of the JSON plan", &json_run.stderr);
    assert_eq!(
        json_run.code,
        Some(2),
        "{}\n{}",
        json_run.stdout,
        json_run.stderr
    );
    let json: serde_json::Value = serde_json::from_str(&json_run.stdout).unwrap();
    assert_eq!(json["counts"]["configured"], 2, "{json:#}");
    // The changes still show, masked.
    let changes = json["objects"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|o| o["diff"]["changes"].as_array().cloned().unwrap_or_default())
        .collect::<Vec<_>>();
    assert!(
        changes
            .iter()
            .any(|c| c["path"] == "data.password" && c["after"] == "*** (after)"),
        "{json:#}"
    );

    let text_run =
        run_sync(&[flags.clone(), vec!["--color".into(), "always".into()]].concat()).await;
    assert_no_secret("the text plan", &text_run.stdout);
    assert_no_secret("stderr of the text plan", &text_run.stderr);
    assert_eq!(
        text_run.code,
        Some(2),
        "{}\n{}",
        text_run.stdout,
        text_run.stderr
    );
    assert!(
        text_run.stdout.contains("*** (before)"),
        "{}",
        text_run.stdout
    );
    assert!(
        text_run.stdout.contains("*** (after)"),
        "{}",
        text_run.stdout
    );

    // Applied for real, the apply's own output and logs show nothing either.
    let no_dry_run: Vec<String> = flags
        .iter()
        .filter(|f| *f != "--dry-run")
        .cloned()
        .collect();
    let applied = run_sync(&no_dry_run).await;
    assert_no_secret("the apply", &applied.stdout);
    assert_no_secret("stderr of the apply", &applied.stderr);
    assert_eq!(
        applied.code,
        Some(2),
        "{}\n{}",
        applied.stdout,
        applied.stderr
    );
}

/// A Secret whose value has the wrong type fails with the key named, not the value.
#[tokio::test]
async fn a_secret_type_error_names_the_key_not_the_value() {
    let control_plane = gitops_envtest::shared().await.unwrap();
    let namespace = control_plane.create_namespace("secret-type").await.unwrap();
    let repository = GitRepository::create().await.unwrap();
    let secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: {namespace}\nstringData:\n  password: 98765432\n"
    );
    repository
        .commit("secret", &[("app/secret.yaml", Some(&secret))])
        .await
        .unwrap();
    for output in ["text", "json"] {
        let run = run_sync(&[
            "--url".to_owned(),
            repository.url(),
            "--subpath".into(),
            "app".into(),
            "--inventory".into(),
            format!("{namespace}/inventory"),
            "--kubeconfig".into(),
            control_plane.kubeconfig_path().display().to_string(),
            "--dry-run".into(),
            "--output".into(),
            output.into(),
        ])
        .await;
        assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
        let all = format!("{}\n{}", run.stdout, run.stderr);
        assert!(!all.contains("98765432"), "{all}");
        assert!(all.contains("stringData.password"), "{all}");
        assert!(all.contains("secret.yaml:1"), "{all}");
    }
}

/// A file name holding a line feed, in an error: printed escaped, never as a line of its own.
#[tokio::test]
async fn a_file_name_with_a_line_feed_cannot_forge_a_log_line() {
    let control_plane = gitops_envtest::shared().await.unwrap();
    let namespace = control_plane.create_namespace("forged-line").await.unwrap();
    let repository = GitRepository::create().await.unwrap();
    repository
        .commit(
            "forged",
            &[("app/x\nERROR forged line.yaml", Some("kind: [broken\n"))],
        )
        .await
        .unwrap();
    let run = run_sync(&[
        "--url".to_owned(),
        repository.url(),
        "--subpath".into(),
        "app".into(),
        "--inventory".into(),
        format!("{namespace}/inventory"),
        "--kubeconfig".into(),
        control_plane.kubeconfig_path().display().to_string(),
        "--dry-run".into(),
    ])
    .await;
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    let all = format!("{}\n{}", run.stdout, run.stderr);
    assert!(all.contains("x\\nERROR forged line.yaml"), "{all}");
    assert!(
        !all.lines().any(|line| line.starts_with("ERROR forged")),
        "{all}"
    );
}

//! End to end: the `sync` binary's defaults, reports and flags against a real control plane
//! (issue #13: defects 6 and 8, and the command-line rough edges).
//!
//! The tests share one control plane (started on first use, stopped by its watchdog when the
//! test process exits); each test works in namespaces and directories of its own.

use gitops_envtest::ControlPlane;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};

mod common;
use common::{Run, sync_with_env};

static CONTROL_PLANE: tokio::sync::OnceCell<ControlPlane> = tokio::sync::OnceCell::const_new();

async fn control_plane() -> &'static ControlPlane {
    CONTROL_PLANE
        .get_or_init(|| async {
            ControlPlane::start()
                .await
                .expect("the control plane starts")
        })
        .await
}

async fn sync(args: &[String]) -> Run {
    sync_with_env(args, &[]).await
}

/// The pinned binary of `tool` (built into the gitops-envtest cache when missing): the tests
/// hand it to the binaries, which find tools with `gitops_render::tool` only.
async fn pinned(tool: gitops_envtest::Tool) -> std::path::PathBuf {
    tokio::task::spawn_blocking(move || gitops_envtest::tools::ensure(tool))
        .await
        .unwrap()
        .expect("the pinned tool builds")
}

/// `--path <dir> --kubeconfig <control plane>` and `extra`.
fn flags(control_plane: &ControlPlane, dir: &std::path::Path, extra: &[&str]) -> Vec<String> {
    let mut flags = vec![
        "--path".to_owned(),
        dir.display().to_string(),
        "--kubeconfig".to_owned(),
        control_plane.kubeconfig_path().display().to_string(),
    ];
    flags.extend(extra.iter().map(|flag| (*flag).to_owned()));
    flags
}

fn config_map_yaml(namespace: &str, name: &str, color: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {namespace}\ndata:\n  color: {color}\n"
    )
}

/// A directory holding `files` (name, contents).
fn repository(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, contents) in files {
        std::fs::write(dir.path().join(name), contents).unwrap();
    }
    dir
}

async fn color(client: &kube::Client, namespace: &str, name: &str) -> Option<String> {
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    config_maps
        .get_opt(name)
        .await
        .unwrap()
        .map(|config_map| config_map.data.unwrap_or_default()["color"].clone())
}

/// Defect 6: two repositories synced one after the other, each with the default inventory,
/// both keep their objects (they shared `default/gitops-rs`, so the second sync pruned the
/// first one's objects); `--help` says how the default is derived.
#[tokio::test]
async fn default_inventories_of_two_repositories_keep_both_sets() {
    let control_plane = control_plane().await;
    let client = control_plane.client().await.unwrap();
    let namespace = control_plane.create_namespace("two-repos").await.unwrap();
    let first = repository(&[("a.yaml", &config_map_yaml(&namespace, "a", "red"))]);
    let second = repository(&[("b.yaml", &config_map_yaml(&namespace, "b", "blue"))]);

    let first_run = sync(&flags(control_plane, first.path(), &[])).await;
    assert_eq!(
        first_run.code,
        Some(2),
        "{}\n{}",
        first_run.stdout,
        first_run.stderr
    );
    for dir in [&second, &first] {
        let run = sync(&flags(control_plane, dir.path(), &[])).await;
        assert!(
            matches!(run.code, Some(0 | 2)),
            "{}\n{}",
            run.stdout,
            run.stderr
        );
        assert!(run.stdout.contains(" 0 pruned"), "{}", run.stdout);
        assert_eq!(
            color(&client, &namespace, "a").await.as_deref(),
            Some("red")
        );
        assert_eq!(
            color(&client, &namespace, "b").await.as_deref(),
            Some("blue")
        );
    }
    // Each sync of the same directory uses the same inventory: the last run changed nothing.
    let again = sync(&flags(control_plane, second.path(), &[])).await;
    assert_eq!(again.code, Some(0), "{}\n{}", again.stdout, again.stderr);

    let help = sync(&["--help".to_owned()]).await;
    assert_eq!(help.code, Some(0));
    assert!(help.stdout.contains("gitops-<hash>"), "{}", help.stdout);
    assert!(help.stdout.contains("--subpath"), "{}", help.stdout);
}

/// Defect 8: a one-shot sync right after a hand edit reports the drift it corrected, and its
/// JSON says the revision is not new (it said `0 drift corrected` and `newRevision: true`).
#[tokio::test]
async fn a_one_shot_sync_reports_the_drift_it_corrected() {
    let control_plane = control_plane().await;
    let client = control_plane.client().await.unwrap();
    let namespace = control_plane.create_namespace("drift").await.unwrap();
    let dir = repository(&[("a.yaml", &config_map_yaml(&namespace, "a", "red"))]);
    let args = flags(control_plane, dir.path(), &[]);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let hand_edit = || async {
        config_maps
            .patch(
                "a",
                &PatchParams {
                    field_manager: Some("kubectl-edit".into()),
                    ..PatchParams::default()
                },
                &Patch::Merge(serde_json::json!({"data": {"color": "green"}})),
            )
            .await
            .unwrap();
    };

    let first = sync(&[args.clone(), vec!["--output".into(), "json".into()]].concat()).await;
    assert_eq!(first.code, Some(2), "{}\n{}", first.stdout, first.stderr);
    let json = first.json();
    assert_eq!(json["newRevision"], true, "{json:#}");
    assert_eq!(json["driftCorrected"], 0, "{json:#}");

    hand_edit().await;
    let text = sync(&args).await;
    assert_eq!(text.code, Some(2), "{}\n{}", text.stdout, text.stderr);
    assert!(text.stdout.contains("1 drift corrected"), "{}", text.stdout);
    assert_eq!(
        color(&client, &namespace, "a").await.as_deref(),
        Some("red")
    );

    hand_edit().await;
    let json_run = sync(&[args.clone(), vec!["--output".into(), "json".into()]].concat()).await;
    assert_eq!(json_run.code, Some(2), "{}", json_run.stderr);
    let json = json_run.json();
    assert_eq!(json["newRevision"], false, "{json:#}");
    assert_eq!(json["driftCorrected"], 1, "{json:#}");

    // A new revision is new again, and its writes are not drift.
    std::fs::write(
        dir.path().join("a.yaml"),
        config_map_yaml(&namespace, "a", "yellow"),
    )
    .unwrap();
    let changed = sync(&[args.clone(), vec!["--output".into(), "json".into()]].concat()).await;
    let json = changed.json();
    assert_eq!(json["newRevision"], true, "{json:#}");
    assert_eq!(json["driftCorrected"], 0, "{json:#}");
    assert_eq!(json["counts"]["configured"], 1, "{json:#}");
}

/// `--dry-run --output json` carries what each object to create will hold, Secret values
/// masked, so that CI can see it.
#[tokio::test]
async fn a_json_dry_run_carries_the_objects_to_create() {
    let control_plane = control_plane().await;
    let namespace = control_plane.create_namespace("dry-json").await.unwrap();
    let secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: {namespace}\nstringData:\n  password: hunter2-plain\n"
    );
    let dir = repository(&[
        ("a.yaml", &config_map_yaml(&namespace, "a", "red")),
        ("secret.yaml", &secret),
    ]);
    let run = sync(&flags(
        control_plane,
        dir.path(),
        &["--dry-run", "--output", "json"],
    ))
    .await;
    assert_eq!(run.code, Some(2), "{}\n{}", run.stdout, run.stderr);
    let json = run.json();
    let objects = json["objects"].as_array().unwrap();
    let by_name = |name: &str| {
        objects
            .iter()
            .find(|object| object["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {json:#}"))
    };
    assert_eq!(by_name("a")["action"], "created", "{json:#}");
    assert_eq!(by_name("a")["object"]["data"]["color"], "red", "{json:#}");
    assert_eq!(by_name("a")["object"]["kind"], "ConfigMap", "{json:#}");
    let shown = &by_name("db")["object"];
    assert_eq!(shown["kind"], "Secret", "{json:#}");
    assert!(!run.stdout.contains("hunter2"), "{}", run.stdout);
    assert!(!run.stderr.contains("hunter2"), "{}", run.stderr);
}

/// `--allow-empty`: an empty set that would prune everything fails naming the flag (not the
/// library's `ApplyOptions::allow_empty_set`), and passes with it.
#[tokio::test]
async fn allow_empty_is_a_flag_and_errors_name_it() {
    let control_plane = control_plane().await;
    let client = control_plane.client().await.unwrap();
    let namespace = control_plane.create_namespace("empty").await.unwrap();
    let dir = repository(&[("a.yaml", &config_map_yaml(&namespace, "a", "red"))]);
    let args = flags(control_plane, dir.path(), &[]);
    let first = sync(&args).await;
    assert_eq!(first.code, Some(2), "{}\n{}", first.stdout, first.stderr);

    std::fs::remove_file(dir.path().join("a.yaml")).unwrap();
    for extra in [&[][..], &["--output", "json"][..]] {
        let refused = sync(
            &[
                args.clone(),
                extra.iter().map(|s| (*s).to_owned()).collect(),
            ]
            .concat(),
        )
        .await;
        assert_eq!(
            refused.code,
            Some(1),
            "{}\n{}",
            refused.stdout,
            refused.stderr
        );
        let all = format!("{}{}", refused.stdout, refused.stderr);
        assert!(all.contains("--allow-empty"), "{all}");
        assert!(!all.contains("ApplyOptions"), "{all}");
    }
    assert_eq!(
        color(&client, &namespace, "a").await.as_deref(),
        Some("red")
    );
    // A dry run says it was planning, not applying.
    let planned = sync(&[args.clone(), vec!["--dry-run".into()]].concat()).await;
    assert_eq!(
        planned.code,
        Some(1),
        "{}\n{}",
        planned.stdout,
        planned.stderr
    );
    assert!(
        planned.stderr.contains("planning (dry run)"),
        "{}",
        planned.stderr
    );
    assert!(!planned.stderr.contains("applying"), "{}", planned.stderr);
    assert!(
        planned.stderr.contains("--allow-empty"),
        "{}",
        planned.stderr
    );

    let allowed = sync(&[args.clone(), vec!["--allow-empty".into()]].concat()).await;
    assert_eq!(
        allowed.code,
        Some(2),
        "{}\n{}",
        allowed.stdout,
        allowed.stderr
    );
    assert_eq!(color(&client, &namespace, "a").await, None);
}

/// `--recreate`: an immutable ConfigMap whose data changes fails naming the flag, and is
/// recreated with it.
#[tokio::test]
async fn recreate_is_a_flag_and_errors_name_it() {
    let control_plane = control_plane().await;
    let client = control_plane.client().await.unwrap();
    let namespace = control_plane.create_namespace("recreate").await.unwrap();
    let frozen = |color: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: frozen\n  namespace: {namespace}\nimmutable: true\ndata:\n  color: {color}\n"
        )
    };
    let dir = repository(&[("frozen.yaml", &frozen("blue"))]);
    let args = flags(control_plane, dir.path(), &[]);
    let first = sync(&args).await;
    assert_eq!(first.code, Some(2), "{}\n{}", first.stdout, first.stderr);

    std::fs::write(dir.path().join("frozen.yaml"), frozen("green")).unwrap();
    let refused = sync(&args).await;
    assert_eq!(
        refused.code,
        Some(1),
        "{}\n{}",
        refused.stdout,
        refused.stderr
    );
    let all = format!("{}{}", refused.stdout, refused.stderr);
    assert!(all.contains("--recreate"), "{all}");
    // The failure is shown once (stdout lists the object; the error does not repeat it).
    assert_eq!(
        all.matches("immutable field(s) data changed").count(),
        1,
        "{all}"
    );
    assert!(refused.stderr.contains("failed validation"), "{all}");
    assert!(!all.contains("ApplyOptions"), "{all}");
    assert_eq!(
        color(&client, &namespace, "frozen").await.as_deref(),
        Some("blue")
    );

    let recreated = sync(&[args.clone(), vec!["--recreate".into()]].concat()).await;
    assert_eq!(
        recreated.code,
        Some(2),
        "{}\n{}",
        recreated.stdout,
        recreated.stderr
    );
    assert_eq!(
        color(&client, &namespace, "frozen").await.as_deref(),
        Some("green")
    );
}

/// `--strict-substitution`: a variable without a value fails the render, naming it; without
/// the flag it becomes empty.
#[tokio::test]
async fn strict_substitution_is_a_flag() {
    let control_plane = control_plane().await;
    let client = control_plane.client().await.unwrap();
    let namespace = control_plane.create_namespace("strict").await.unwrap();
    let dir = repository(&[(
        "a.yaml",
        &config_map_yaml(&namespace, "a", "\"x${UNSET_COLOR}\""),
    )]);
    let args = flags(control_plane, dir.path(), &[]);

    let strict = sync(&[args.clone(), vec!["--strict-substitution".into()]].concat()).await;
    assert_eq!(strict.code, Some(1), "{}\n{}", strict.stdout, strict.stderr);
    assert!(strict.stderr.contains("UNSET_COLOR"), "{}", strict.stderr);
    assert_eq!(color(&client, &namespace, "a").await, None);

    let lenient = sync(&[args.clone(), vec!["--var".into(), "OTHER=1".into()]].concat()).await;
    assert_eq!(
        lenient.code,
        Some(2),
        "{}\n{}",
        lenient.stdout,
        lenient.stderr
    );
    assert_eq!(color(&client, &namespace, "a").await.as_deref(), Some("x"));
}

/// Logs carry no colour escapes when standard error is not a terminal; entries the source left
/// out (a symbolic link) are shown as warnings and listed in the JSON.
#[tokio::test]
async fn logs_are_plain_and_skipped_entries_are_warnings() {
    let control_plane = control_plane().await;
    let namespace = control_plane.create_namespace("plain-logs").await.unwrap();
    let dir = repository(&[("a.yaml", &config_map_yaml(&namespace, "a", "red"))]);
    std::os::unix::fs::symlink(dir.path().join("a.yaml"), dir.path().join("link.yaml")).unwrap();
    let args = flags(control_plane, dir.path(), &["--output", "json"]);

    let run = sync_with_env(&args, &[("RUST_LOG", "info")]).await;
    assert_eq!(run.code, Some(2), "{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("INFO"), "{}", run.stderr);
    assert!(!run.stderr.contains('\u{1b}'), "{:?}", run.stderr);
    assert!(
        run.stderr
            .contains("warning: link.yaml (symbolic link) was left out"),
        "{}",
        run.stderr
    );
    let json = run.json();
    assert_eq!(
        json["skippedEntries"],
        serde_json::json!(["link.yaml (symbolic link)"]),
        "{json:#}"
    );
}

/// A chart rendered with the automatic renderer: the release is named after the chart's
/// directory, helm sees the cluster's version and served API versions (a CRD's kind included),
/// `--helm-kube-version` overrides the version, and hooks are left out unless
/// `--helm-hooks include`.
#[tokio::test]
async fn helm_renders_for_the_cluster_it_syncs_to() {
    let control_plane = control_plane().await;
    let client = control_plane.client().await.unwrap();
    let namespace = control_plane.create_namespace("helm-caps").await.unwrap();

    // A CRD only this cluster serves: helm knows its kind only through discovery.
    let group = format!("{namespace}.example.com");
    let crd: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition =
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("widgets.{group}")},
            "spec": {
                "group": group,
                "names": {"kind": "Widget", "plural": "widgets", "singular": "widget", "listKind": "WidgetList"},
                "scope": "Namespaced",
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}],
            },
        }))
        .unwrap();
    Api::all(client.clone())
        .create(&kube::api::PostParams::default(), &crd)
        .await
        .unwrap();
    let mut served = false;
    for _ in 0..120 {
        let groups = client.list_api_groups().await.unwrap();
        if groups.groups.iter().any(|g| g.name == group) {
            served = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert!(served, "the CRD's group is never served");

    let dir = tempfile::tempdir().unwrap();
    let chart = dir.path().join("web");
    std::fs::create_dir_all(chart.join("templates")).unwrap();
    std::fs::write(
        chart.join("Chart.yaml"),
        "apiVersion: v2\nname: webchart\nversion: 0.1.0\nkubeVersion: \">=1.23.0-0\"\n",
    )
    .unwrap();
    std::fs::write(
        chart.join("templates/settings.yaml"),
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{{{ .Release.Name }}}}-settings\ndata:\n  kube: {{{{ .Capabilities.KubeVersion.Version | quote }}}}\n  widget: {{{{ .Capabilities.APIVersions.Has \"{group}/v1/Widget\" | quote }}}}\n"
        ),
    )
    .unwrap();
    std::fs::write(
        chart.join("templates/hook.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-hook\n  annotations:\n    helm.sh/hook: pre-install\ndata:\n  a: b\n",
    )
    .unwrap();
    let helm = pinned(gitops_envtest::Tool::Helm).await;
    let args = flags(
        control_plane,
        dir.path(),
        &[
            "--subpath",
            "web",
            "--namespace",
            &namespace,
            "--helm",
            &helm.display().to_string(),
        ],
    );
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let data = |name: &'static str| {
        let config_maps = config_maps.clone();
        async move {
            config_maps
                .get_opt(name)
                .await
                .unwrap()
                .map(|config_map| config_map.data.unwrap_or_default())
        }
    };

    let run = sync(&args).await;
    assert_eq!(run.code, Some(2), "{}\n{}", run.stdout, run.stderr);
    let settings = data("web-settings")
        .await
        .expect("release named after the chart directory");
    let version = client.apiserver_version().await.unwrap().git_version;
    assert_eq!(settings["kube"], version, "{settings:?}");
    assert_eq!(settings["widget"], "true", "{settings:?}");
    assert!(data("web-hook").await.is_none(), "a hook was applied");
    assert!(run.stderr.contains("hook"), "{}", run.stderr);
    assert!(
        run.stderr.contains("--helm-hooks include"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("HookPolicy"), "{}", run.stderr);

    let pinned = sync(
        &[
            args.clone(),
            vec![
                "--helm-kube-version".into(),
                "v1.30.0".into(),
                "--helm-hooks".into(),
                "include".into(),
            ],
        ]
        .concat(),
    )
    .await;
    assert_eq!(pinned.code, Some(2), "{}\n{}", pinned.stdout, pinned.stderr);
    assert_eq!(data("web-settings").await.unwrap()["kube"], "v1.30.0");
    assert!(
        data("web-hook").await.is_some(),
        "--helm-hooks include keeps hooks"
    );
}

/// `reconcile` shows the entries the source left out (a symbolic link) as warnings.
#[tokio::test]
async fn reconcile_warns_of_skipped_entries() {
    use tokio::io::AsyncBufReadExt as _;
    let control_plane = control_plane().await;
    let namespace = control_plane
        .create_namespace("reconcile-skip")
        .await
        .unwrap();
    let dir = repository(&[("a.yaml", &config_map_yaml(&namespace, "a", "red"))]);
    std::os::unix::fs::symlink(dir.path().join("a.yaml"), dir.path().join("link.yaml")).unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_reconcile"))
        .args(flags(control_plane, dir.path(), &["--interval", "1h"]))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = String::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        seen.push_str(&line);
        seen.push('\n');
        if line.starts_with("cycle 1 ") {
            break;
        }
    }
    child.kill().await.unwrap();
    assert!(
        seen.contains("warning: link.yaml (symbolic link) was left out"),
        "{seen}"
    );
    assert!(seen.contains("cycle 1 ok"), "{seen}");
}

/// `--take-ownership`: an object another application's inventory owns is left alone and
/// reported, naming the flag; with the flag it is taken over.
#[tokio::test]
async fn take_ownership_is_a_flag_and_the_refusal_names_it() {
    let control_plane = control_plane().await;
    let client = control_plane.client().await.unwrap();
    let namespace = control_plane.create_namespace("owned").await.unwrap();
    let first = repository(&[("a.yaml", &config_map_yaml(&namespace, "a", "red"))]);
    let second = repository(&[("a.yaml", &config_map_yaml(&namespace, "a", "blue"))]);
    let run = sync(&flags(control_plane, first.path(), &[])).await;
    assert_eq!(run.code, Some(2), "{}\n{}", run.stdout, run.stderr);

    for extra in [&[][..], &["--output", "json"][..], &["--dry-run"][..]] {
        let refused = sync(&flags(control_plane, second.path(), extra)).await;
        let all = format!("{}{}", refused.stdout, refused.stderr);
        assert!(all.contains("--take-ownership"), "{all}");
        assert!(!all.contains("ApplyOptions"), "{all}");
        assert_eq!(
            color(&client, &namespace, "a").await.as_deref(),
            Some("red")
        );
    }

    let taken = sync(&flags(control_plane, second.path(), &["--take-ownership"])).await;
    assert_eq!(taken.code, Some(2), "{}\n{}", taken.stdout, taken.stderr);
    assert_eq!(
        color(&client, &namespace, "a").await.as_deref(),
        Some("blue")
    );
}

/// Issue #15: `sync` finds kustomize with `--kustomize`, else `GITOPS_KUSTOMIZE`, else `PATH`
/// (it looked in gitops-envtest's cache); a path given that is wrong fails before any write,
/// naming it, and a tool found nowhere says how to give it.
#[tokio::test]
async fn sync_finds_kustomize_by_flag_variable_or_path() {
    let control_plane = control_plane().await;
    let client = control_plane.client().await.unwrap();
    let namespace = control_plane.create_namespace("tools").await.unwrap();
    let kustomize = pinned(gitops_envtest::Tool::Kustomize).await;
    let dir = repository(&[
        (
            "kustomization.yaml",
            "resources: [cm.yaml]\nnamePrefix: k-\n",
        ),
        ("cm.yaml", &config_map_yaml(&namespace, "a", "red")),
    ]);
    let bin = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(&kustomize, bin.path().join("kustomize")).unwrap();
    let empty = tempfile::tempdir().unwrap();
    // git for nothing here (a local directory), and no kustomize on PATH unless given.
    let no_tools = format!("{}:/usr/bin:/bin", empty.path().display());
    let with_bin = format!("{}:/usr/bin:/bin", bin.path().display());
    let args = |extra: &[&str]| {
        flags(
            control_plane,
            dir.path(),
            &[&["--renderer", "kustomize", "--output", "json"], extra].concat(),
        )
    };
    let kustomize_text = kustomize.display().to_string();

    let nowhere = sync_with_env(&args(&[]), &[("PATH", &no_tools), ("GITOPS_KUSTOMIZE", "")]).await;
    assert_eq!(
        nowhere.code,
        Some(1),
        "{}\n{}",
        nowhere.stdout,
        nowhere.stderr
    );
    let output = format!("{}{}", nowhere.stdout, nowhere.stderr);
    assert!(
        output.contains("kustomize not found: set GITOPS_KUSTOMIZE, pass its path (such as --kustomize) or put it on PATH"),
        "{output}"
    );
    assert_eq!(color(&client, &namespace, "k-a").await, None);

    // The automatic renderer, too, when the directory is a kustomization.
    let auto_args = flags(control_plane, dir.path(), &["--output", "json"]);
    let nowhere = sync_with_env(&auto_args, &[("PATH", &no_tools), ("GITOPS_KUSTOMIZE", "")]).await;
    assert_eq!(
        nowhere.code,
        Some(1),
        "{}\n{}",
        nowhere.stdout,
        nowhere.stderr
    );
    let output = format!("{}{}", nowhere.stdout, nowhere.stderr);
    assert!(
        output.contains(".: is a kustomization, but kustomize was not found: kustomize not found: set GITOPS_KUSTOMIZE, pass its path (such as --kustomize) or put it on PATH"),
        "{output}"
    );

    let wrong = sync_with_env(
        &args(&["--kustomize", "/nonexistent/kustomize"]),
        &[("PATH", &with_bin)],
    )
    .await;
    assert_eq!(wrong.code, Some(1), "{}\n{}", wrong.stdout, wrong.stderr);
    let output = format!("{}{}", wrong.stdout, wrong.stderr);
    assert!(
        output.contains("kustomize at /nonexistent/kustomize (given explicitly)"),
        "a wrong path is never passed over for the one on PATH: {output}"
    );
    assert_eq!(color(&client, &namespace, "k-a").await, None);

    let by_variable = sync_with_env(
        &args(&[]),
        &[("PATH", &no_tools), ("GITOPS_KUSTOMIZE", &kustomize_text)],
    )
    .await;
    assert_eq!(
        by_variable.code,
        Some(2),
        "{}\n{}",
        by_variable.stdout,
        by_variable.stderr
    );
    assert_eq!(
        color(&client, &namespace, "k-a").await.as_deref(),
        Some("red")
    );

    let by_path = sync_with_env(&args(&[]), &[("PATH", &with_bin), ("GITOPS_KUSTOMIZE", "")]).await;
    assert_eq!(
        by_path.code,
        Some(0),
        "{}\n{}",
        by_path.stdout,
        by_path.stderr
    );

    let by_flag = sync_with_env(
        &args(&["--kustomize", &kustomize_text]),
        &[
            ("PATH", &no_tools),
            ("GITOPS_KUSTOMIZE", "/nonexistent/kustomize"),
        ],
    )
    .await;
    assert_eq!(
        by_flag.code,
        Some(0),
        "the flag wins: {}\n{}",
        by_flag.stdout,
        by_flag.stderr
    );
}

/// Issue #17: `--sparse` fetches only what the render reads: the subpath and the base its
/// kustomization names, nothing else of the source.
#[tokio::test]
async fn sparse_fetches_only_the_subpath_and_what_it_references() {
    let control_plane = control_plane().await;
    let client = control_plane.client().await.unwrap();
    let namespace = control_plane.create_namespace("sparse").await.unwrap();
    let kustomize = pinned(gitops_envtest::Tool::Kustomize).await;
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in [
        (
            "apps/prod/kustomization.yaml",
            "resources:\n- ../../base\n".to_owned(),
        ),
        (
            "base/kustomization.yaml",
            "resources:\n- cm.yaml\n".to_owned(),
        ),
        ("base/cm.yaml", config_map_yaml(&namespace, "a", "red")),
        ("other/x.yaml", config_map_yaml(&namespace, "x", "grey")),
    ] {
        let full = dir.path().join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, text).unwrap();
    }
    let work = tempfile::tempdir().unwrap();
    let kustomize = kustomize.display().to_string();
    let work_dir = work.path().display().to_string();
    let args = flags(
        control_plane,
        dir.path(),
        &[
            "--subpath",
            "apps/prod",
            "--sparse",
            "--kustomize",
            &kustomize,
            "--work-dir",
            &work_dir,
        ],
    );
    let run = sync(&args).await;
    assert_eq!(run.code, Some(2), "{}\n{}", run.stdout, run.stderr);
    assert_eq!(
        color(&client, &namespace, "a").await.as_deref(),
        Some("red")
    );
    // The artifact kept in the work directory holds the subpath and the base only.
    let mut files = Vec::new();
    let mut pending = vec![work.path().to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path.display().to_string());
            }
        }
    }
    assert!(
        files.iter().any(|f| f.ends_with("/base/cm.yaml")),
        "{files:?}"
    );
    assert!(
        files
            .iter()
            .any(|f| f.ends_with("/apps/prod/kustomization.yaml")),
        "{files:?}"
    );
    assert!(
        !files.iter().any(|f| f.ends_with("/other/x.yaml")),
        "{files:?}"
    );
}

/// Polls `check` every 200 ms until it holds; panics naming `what` after a minute.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..300 {
        if check().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    panic!("{what} did not happen within a minute");
}

/// `reconcile` end to end, a gitops-sync reconciler over the flags' unit: it applies, corrects
/// a hand edit on a later cycle, prunes a removed file, and records the revision it applied on
/// the inventory, so that a one-shot `sync` afterwards finds nothing new and nothing to do.
#[tokio::test]
async fn reconcile_applies_corrects_drift_prunes_and_records_its_revision() {
    let control_plane = control_plane().await;
    let client = control_plane.client().await.unwrap();
    let namespace = control_plane
        .create_namespace("reconcile-e2e")
        .await
        .unwrap();
    let dir = repository(&[
        ("a.yaml", &config_map_yaml(&namespace, "a", "red")),
        ("b.yaml", &config_map_yaml(&namespace, "b", "blue")),
    ]);
    let inventory = format!("{namespace}/apps");
    let args = flags(control_plane, dir.path(), &["--inventory", &inventory]);
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_reconcile"))
        .args(&args)
        .args(["--interval", "1s"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);

    eventually("the first apply", || async {
        color(&client, &namespace, "a").await.as_deref() == Some("red")
            && color(&client, &namespace, "b").await.as_deref() == Some("blue")
    })
    .await;
    eventually("recording the applied revision", || async {
        config_maps
            .get_opt("apps")
            .await
            .unwrap()
            .is_some_and(|inventory| {
                inventory
                    .metadata
                    .annotations
                    .unwrap_or_default()
                    .contains_key(gitops_examples::pipeline::APPLIED_REVISION_ANNOTATION)
            })
    })
    .await;

    config_maps
        .patch(
            "a",
            &PatchParams {
                field_manager: Some("kubectl-edit".into()),
                ..PatchParams::default()
            },
            &Patch::Merge(serde_json::json!({"data": {"color": "green"}})),
        )
        .await
        .unwrap();
    eventually("the hand edit corrected", || async {
        color(&client, &namespace, "a").await.as_deref() == Some("red")
    })
    .await;

    std::fs::remove_file(dir.path().join("b.yaml")).unwrap();
    eventually("b pruned", || async {
        color(&client, &namespace, "b").await.is_none()
    })
    .await;
    child.kill().await.unwrap();

    // The recorded revision is the one in the directory: nothing new, nothing to do.
    let after = sync(&[args, vec!["--output".into(), "json".into()]].concat()).await;
    assert_eq!(after.code, Some(0), "{}\n{}", after.stdout, after.stderr);
    assert_eq!(after.json()["newRevision"], false, "{}", after.stdout);
}

//! `gitops-envtest`: build the pinned tools, or run a local control plane until Ctrl-C.
//!
//! ```text
//! gitops-envtest install            build every pinned tool that is missing and print its path
//! gitops-envtest start              start a control plane, print its kubeconfig, run until Ctrl-C
//! gitops-envtest path <tool>        print the path of one tool (building it if missing)
//! ```

use std::process::ExitCode;

use gitops_envtest::{ControlPlane, Tool, tools};

fn usage() -> ExitCode {
    eprintln!(
        "usage: gitops-envtest install | start | path <kube-apiserver|kube-controller-manager|kubectl|etcd|helm|kustomize>"
    );
    ExitCode::from(2)
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            // While the apiserver starts, kube's client logs every refused readiness check as an
            // error; they are expected, and a real failure is reported by us.
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube_client=off".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["install"] => {
            for tool in Tool::ALL {
                match tokio::task::spawn_blocking(move || tools::ensure(tool)).await {
                    Ok(Ok(path)) => println!("{}\t{}", tool.binary_name(), path.display()),
                    Ok(Err(e)) => {
                        eprintln!("error: {e}");
                        return ExitCode::FAILURE;
                    }
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            }
            ExitCode::SUCCESS
        }
        ["path", name] => {
            let Some(tool) = Tool::ALL.into_iter().find(|t| t.binary_name() == *name) else {
                return usage();
            };
            match tokio::task::spawn_blocking(move || tools::ensure(tool)).await {
                Ok(Ok(path)) => {
                    println!("{}", path.display());
                    ExitCode::SUCCESS
                }
                Ok(Err(e)) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        ["start"] => match ControlPlane::start().await {
            Ok(control_plane) => {
                println!("server:     {}", control_plane.server());
                println!("kubeconfig: {}", control_plane.kubeconfig_path().display());
                println!(
                    "try:        KUBECONFIG={} kubectl get namespaces",
                    control_plane.kubeconfig_path().display()
                );
                println!("Ctrl-C stops the control plane and removes its files.");
                let _ = tokio::signal::ctrl_c().await;
                control_plane.stop();
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        _ => usage(),
    }
}

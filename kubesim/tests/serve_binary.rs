//! `kubesim serve --port N --kubeconfig PATH` writes a kubeconfig that kubectl uses directly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn serve_writes_a_kubeconfig_kubectl_uses() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let port = free_port();
    let _child = Child(
        std::process::Command::new(env!("CARGO_BIN_EXE_kubesim"))
            .args(["serve", "--port", &port.to_string(), "--kubeconfig"])
            .arg(&kubeconfig)
            .args([
                "--https",
                "--token",
                "t0ken",
                "--node",
                "node-a,medplat.io/hardened=true,taint:dedicated=audit:NoSchedule",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    for _ in 0..100 {
        if kubeconfig.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let text = std::fs::read_to_string(&kubeconfig).unwrap();
    assert!(
        text.contains(&format!("https://127.0.0.1:{port}")),
        "{text}"
    );
    assert!(
        text.contains("certificate-authority-data") && text.contains("t0ken"),
        "{text}"
    );
    let out = std::process::Command::new("kubectl")
        .args(["get", "nodes", "--show-labels", "--cache-dir"])
        .arg(dir.path().join("cache"))
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .expect("kubectl is installed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("node-a") && stdout.contains("medplat.io/hardened=true"),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("node-a") && l.contains(" Ready ")),
        "the seeded node reports Ready: {stdout}"
    );
}

//! The `kubesim` binary: serves the simulated API server on loopback.

fn main() {
    println!("kubesim: not implemented yet");
}

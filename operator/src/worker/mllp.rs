//! `medplat worker listen`: the HL7 v2 MLLP listener of an `hl7v2` DataSource.
//!
//! Frames are `0x0B message 0x1C 0x0D`. Each accepted message is landed atomically in the
//! landing directory (written under a hidden name, synced, renamed) in the sender's charset,
//! then acknowledged `MSA|AA`; a malformed, wrongly encoded or unwanted message gets `AR` with
//! the reason, and a landing failure `AE` (the sender retries). Garbage between frames is
//! skipped, over-long frames are rejected, and idle or half-open connections time out, so no
//! client can wedge the listener.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clap::Args;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::charset;
use super::hl7::{self, AckCode};
use crate::api::audit::{AuditAction, AuditData, AuditEmitter, AuditEvent, AuditResult};
use crate::api::classification::{Level, Purpose};
use crate::api::data_source::Charset;

/// MLLP start block.
pub const START: u8 = 0x0b;
/// MLLP end block (followed by a carriage return).
pub const END: u8 = 0x1c;

/// Options of `medplat worker listen`.
#[derive(Args, Debug, Clone)]
pub struct ListenArgs {
    /// The TCP port.
    #[arg(long, default_value_t = 2575)]
    pub port: u16,
    /// The address to bind.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind: String,
    /// The senders' charset: UTF-8, GB18030 or GBK.
    #[arg(long, default_value = "UTF-8", value_parser = parse_charset)]
    pub charset: Charset,
    /// Where accepted messages land.
    #[arg(long)]
    pub landing_dir: PathBuf,
    /// The DataSource, as namespace/name (for audit events).
    #[arg(long, default_value = "default/hl7v2")]
    pub source: String,
    /// Accepted message types, comma-separated (`ADT^A01,ADT^A08`); all when empty.
    #[arg(long, value_delimiter = ',')]
    pub message_types: Vec<String>,
    /// The largest accepted message in bytes.
    #[arg(long, default_value_t = 4 * 1024 * 1024)]
    pub max_message_bytes: usize,
    /// Seconds a connection may stay silent before it is closed.
    #[arg(long, default_value_t = 300)]
    pub idle_timeout_seconds: u64,
    /// The level of the landed data, for audit events.
    #[arg(long, default_value = "L4", value_parser = parse_level)]
    pub level: Level,
    /// The ServiceAccount the listener runs as, for audit events.
    #[arg(long, default_value = "medplat-listener")]
    pub service_account: String,
}

fn parse_charset(s: &str) -> Result<Charset, String> {
    match s.to_ascii_uppercase().as_str() {
        "UTF-8" | "UTF8" => Ok(Charset::Utf8),
        "GB18030" => Ok(Charset::Gb18030),
        "GBK" => Ok(Charset::Gbk),
        other => Err(format!(
            "unknown charset {other}: use UTF-8, GB18030 or GBK"
        )),
    }
}

fn parse_level(s: &str) -> Result<Level, String> {
    Level::parse(s).ok_or_else(|| format!("unknown level {s}: use L1..L5"))
}

/// What can stop the listener.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// The port could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The landing directory is unusable.
    #[error("landing directory {}", path.display())]
    Landing {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// The listener's shared state.
pub struct Listener {
    args: ListenArgs,
    audit: Arc<AuditEmitter>,
    seq: AtomicU64,
    host: String,
}

impl Listener {
    /// Prepares a listener (creates the landing directory).
    pub fn new(args: ListenArgs, audit: Arc<AuditEmitter>) -> Result<Arc<Self>, ListenError> {
        std::fs::create_dir_all(&args.landing_dir).map_err(|source| ListenError::Landing {
            path: args.landing_dir.clone(),
            source,
        })?;
        let host = std::env::var("MEDPLAT_POD_NAME")
            .or_else(|_| std::env::var("HOSTNAME"))
            .unwrap_or_else(|_| "listener".into())
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        Ok(Arc::new(Listener {
            args,
            audit,
            seq: AtomicU64::new(0),
            host,
        }))
    }

    /// Serves connections from `listener` until `shutdown` resolves.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let me = self.clone();
                        tokio::spawn(async move { me.connection(stream).await });
                    }
                    Err(e) => {
                        eprintln!("mllp: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
    }

    async fn connection(&self, mut stream: TcpStream) {
        let idle = Duration::from_secs(self.args.idle_timeout_seconds.max(1));
        let mut buf: Vec<u8> = Vec::with_capacity(8192);
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            // A silent peer (half-open connection) is dropped after the idle timeout.
            let n = match tokio::time::timeout(idle, stream.read(&mut chunk)).await {
                Err(_) | Ok(Err(_)) | Ok(Ok(0)) => return,
                Ok(Ok(n)) => n,
            };
            buf.extend_from_slice(&chunk[..n]);
            for reply in self.drain_frames(&mut buf).await {
                if stream.write_all(&reply).await.is_err() {
                    return;
                }
            }
        }
    }

    /// Takes every complete frame out of `buf` and returns the replies, in order. Garbage
    /// before a start block is skipped; a frame cut short by a new start block, or longer than
    /// the limit, is rejected.
    pub async fn drain_frames(&self, buf: &mut Vec<u8>) -> Vec<Vec<u8>> {
        let cs = self.args.charset;
        let reject = |text: &str| {
            frame(&charset::encode(
                &hl7::ack(None, AckCode::Reject, text, &now_hl7()),
                cs,
            ))
        };
        let mut replies = Vec::new();
        loop {
            match buf.iter().position(|b| *b == START) {
                None => {
                    buf.clear();
                    return replies;
                }
                Some(i) => {
                    buf.drain(..i);
                }
            }
            let next_start = buf[1..].iter().position(|b| *b == START).map(|i| i + 1);
            let end = buf.windows(2).position(|w| w == [END, b'\r']);
            match (end, next_start) {
                (Some(e), ns) if ns.is_none_or(|s| e < s) => {
                    let message: Vec<u8> = buf[1..e].to_vec();
                    buf.drain(..e + 2);
                    if message.len() > self.args.max_message_bytes {
                        replies.push(reject(&format!(
                            "message exceeds {} bytes",
                            self.args.max_message_bytes
                        )));
                    } else {
                        replies.push(self.handle(&message).await);
                    }
                }
                (_, Some(s)) => {
                    buf.drain(..s);
                    replies.push(reject(
                        "frame truncated: a new start block came before the end block",
                    ));
                }
                (Some(_), None) => return replies,
                (None, None) if buf.len() > self.args.max_message_bytes + 2 => {
                    buf.clear();
                    replies.push(reject(&format!(
                        "message exceeds {} bytes",
                        self.args.max_message_bytes
                    )));
                    return replies;
                }
                (None, None) => return replies,
            }
        }
    }

    /// Decides one framed message and returns the framed ACK.
    pub async fn handle(&self, raw: &[u8]) -> Vec<u8> {
        let cs = self.args.charset;
        let reply = |m: Option<&hl7::Message>, code, text: &str| {
            frame(&charset::encode(&hl7::ack(m, code, text, &now_hl7()), cs))
        };
        let Some(text) = charset::decode(raw, cs) else {
            return reply(
                None,
                AckCode::Reject,
                &format!("message is not valid {}", cs.label()),
            );
        };
        let msg = match hl7::parse(&text) {
            Ok(m) => m,
            Err(e) => return reply(None, AckCode::Reject, &e.to_string()),
        };
        let kind = msg.message_type().unwrap_or_default();
        if !self.args.message_types.is_empty()
            && !self.args.message_types.iter().any(|t| {
                *t == kind
                    || kind.starts_with(&format!("{t}^"))
                    || t.split('^').next() == Some(kind.as_str())
            })
        {
            return reply(
                Some(&msg),
                AckCode::Reject,
                &format!("message type {kind} is not accepted"),
            );
        }
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let name = format!(
            "{}-{}-{seq:08}.hl7",
            jiff::Timestamp::now().strftime("%Y%m%dT%H%M%S%.6fZ"),
            self.host
        );
        let dir = self.args.landing_dir.clone();
        let mut body = raw.to_vec();
        if !body.ends_with(b"\r") {
            body.push(b'\r');
        }
        let landed = tokio::task::spawn_blocking(move || land(&dir, &name, &body)).await;
        let ok = matches!(landed, Ok(Ok(())));
        let (ns, src) = self
            .args
            .source
            .split_once('/')
            .unwrap_or(("default", self.args.source.as_str()));
        let event = AuditEvent {
            audit: true,
            time: jiff::Timestamp::now().to_string(),
            who: AuditEvent::service_account(ns, &self.args.service_account),
            action: AuditAction::Write,
            data: AuditData {
                kind: "DataSource".into(),
                name: src.into(),
                dataset: Some(self.args.landing_dir.display().to_string()),
                level: self.args.level,
            },
            purpose: Purpose::Treatment,
            result: if ok {
                AuditResult::Success
            } else {
                AuditResult::Failure
            },
            pipeline: None,
            run_id: None,
            records: Some(1),
            reason: None,
        };
        if self.audit.emit(&event).is_err() {
            // No data moves unaudited: refuse so the sender retries.
            return reply(Some(&msg), AckCode::Error, "audit trail unavailable");
        }
        if ok {
            reply(Some(&msg), AckCode::Accept, "")
        } else {
            reply(Some(&msg), AckCode::Error, "cannot land the message; retry")
        }
    }
}

/// Writes a file atomically: hidden temp name, sync, rename, sync the directory.
fn land(dir: &Path, name: &str, body: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    std::io::Write::write_all(&mut f, body)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))?;
    std::fs::File::open(dir)?.sync_all()
}

/// Wraps a payload in MLLP framing.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 3);
    out.push(START);
    out.extend_from_slice(payload);
    out.push(END);
    out.push(b'\r');
    out
}

fn now_hl7() -> String {
    jiff::Timestamp::now().strftime("%Y%m%d%H%M%S").to_string()
}

/// Binds and serves until SIGTERM or Ctrl-C.
pub async fn listen(args: &ListenArgs) -> Result<(), ListenError> {
    let addr = format!("{}:{}", args.bind, args.port);
    let tcp = TcpListener::bind(&addr)
        .await
        .map_err(|source| ListenError::Bind {
            addr: addr.clone(),
            source,
        })?;
    let listener = Listener::new(args.clone(), Arc::new(AuditEmitter::stdout()))?;
    eprintln!(
        "mllp: listening on {addr}, landing in {}",
        args.landing_dir.display()
    );
    let shutdown = async {
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(t) => t,
                    Err(_) => {
                        let _ = tokio::signal::ctrl_c().await;
                        return;
                    }
                };
            tokio::select! {
                _ = term.recv() => {},
                _ = tokio::signal::ctrl_c() => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    };
    listener.serve(tcp, shutdown).await;
    Ok(())
}

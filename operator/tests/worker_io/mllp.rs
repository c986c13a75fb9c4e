//! The HL7 v2 MLLP listener on loopback: ACKs, rejections with a reason, garbage between
//! frames, over-long and truncated frames, half-open connections, and what lands and is audited.

use std::sync::Arc;
use std::time::Duration;

use medplat::api::audit::AuditEmitter;
use medplat::api::data_source::Charset;
use medplat::worker::charset::{decode, encode};
use medplat::worker::mllp::{self, ListenArgs, Listener};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Captured, runtime};

const ADT: &str = "MSH|^~\\&|HIS|HOSP|MEDPLAT|HOSP|20261128093000||ADT^A01^ADT_A01|MSG0001|P|2.5|||||CHN|GB18030\rPID|1||P1^^^HIS^PI||王^小明||19491231|M\r";

async fn exchange(stream: &mut tokio::net::TcpStream, bytes: &[u8]) -> String {
    stream.write_all(bytes).await.unwrap();
    read_ack(stream).await
}

async fn read_ack(stream: &mut tokio::net::TcpStream) -> String {
    let mut buf = Vec::new();
    let mut b = [0u8; 1];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut b))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 1, "connection closed before the ACK");
        buf.push(b[0]);
        if buf.ends_with(&[mllp::END, b'\r']) {
            break;
        }
    }
    decode(&buf[1..buf.len() - 2], Charset::Gb18030)
        .unwrap()
        .into_owned()
}

#[test]
fn worker_mllp_listener_acks_lands_and_survives_bad_clients() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let landing = dir.path().join("inbox");
    let audit = Captured::default();
    let args = ListenArgs {
        port: 0,
        bind: "127.0.0.1".into(),
        charset: Charset::Gb18030,
        landing_dir: landing.clone(),
        source: "clinical/adt-feed".into(),
        message_types: vec!["ADT^A01".into(), "ADT^A02".into()],
        max_message_bytes: 2048,
        idle_timeout_seconds: 1,
        level: medplat::api::classification::Level::L4,
        service_account: "medplat-source-adt-feed".into(),
    };
    let listener = Listener::new(
        args,
        Arc::new(AuditEmitter::to_writer(Box::new(audit.clone()))),
    )
    .unwrap();
    rt.block_on(async {
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(listener.clone().serve(tcp, async move {
            let _ = stop_rx.await;
        }));

        // A half-open client: a start block and part of a message, then silence.
        let mut stuck = tokio::net::TcpStream::connect(addr).await.unwrap();
        stuck.write_all(&[mllp::START]).await.unwrap();
        stuck.write_all(b"MSH|^~\\&|HIS").await.unwrap();

        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        let good = mllp::frame(&encode(ADT, Charset::Gb18030));
        let ack = exchange(&mut c, &good).await;
        assert!(ack.contains("\rMSA|AA|MSG0001|"), "{ack}");
        assert!(ack.starts_with("MSH|^~\\&|MEDPLAT|HOSP|HIS|HOSP|"), "{ack}");

        // Garbage before a frame is skipped.
        let mut noisy = b"hello\r\n\x00\xff".to_vec();
        noisy.extend_from_slice(&mllp::frame(&encode(
            &ADT.replace("MSG0001", "MSG0002"),
            Charset::Gb18030,
        )));
        assert!(exchange(&mut c, &noisy).await.contains("MSA|AA|MSG0002"));

        // Rejections carry a reason.
        let ack = exchange(&mut c, &mllp::frame(b"PID|1||x")).await;
        assert!(
            ack.contains("MSA|AR||message does not start with an MSH segment"),
            "{ack}"
        );
        let ack = exchange(
            &mut c,
            &mllp::frame(&encode(
                &ADT.replace("ADT^A01^ADT_A01", "ADT^A08"),
                Charset::Gb18030,
            )),
        )
        .await;
        assert!(
            ack.contains("MSA|AR|MSG0001|message type ADT\\S\\A08 is not accepted"),
            "{ack}"
        );
        let mut bad_bytes = encode(ADT, Charset::Gb18030).into_owned();
        bad_bytes.extend_from_slice(b"\x81\x20");
        let ack = exchange(&mut c, &mllp::frame(&bad_bytes)).await;
        assert!(
            ack.contains("MSA|AR||message is not valid GB18030"),
            "{ack}"
        );
        let huge = format!("{ADT}{}", "NTE|1||".repeat(400));
        let ack = exchange(&mut c, &mllp::frame(huge.as_bytes())).await;
        assert!(ack.contains("MSA|AR||message exceeds 2048 bytes"), "{ack}");
        // A frame cut short by the next start block is rejected, the next one accepted.
        let mut truncated = vec![mllp::START];
        truncated.extend_from_slice(b"MSH|^~\\&|cut");
        truncated.extend_from_slice(&mllp::frame(&encode(
            &ADT.replace("MSG0001", "MSG0003"),
            Charset::Gb18030,
        )));
        c.write_all(&truncated).await.unwrap();
        assert!(read_ack(&mut c).await.contains("MSA|AR||frame truncated"));
        assert!(read_ack(&mut c).await.contains("MSA|AA|MSG0003"));

        // The half-open client is dropped after the idle timeout.
        let mut one = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(5), stuck.read(&mut one))
            .await
            .unwrap()
            .unwrap_or(0);
        assert_eq!(n, 0, "idle connection closed");

        let _ = stop_tx.send(());
        server.await.unwrap();
    });

    let mut landed: Vec<_> = std::fs::read_dir(&landing)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    landed.sort();
    assert_eq!(landed.len(), 3, "{landed:?}");
    let first = std::fs::read(&landed[0]).unwrap();
    assert_eq!(first, encode(ADT, Charset::Gb18030).into_owned());
    let events = String::from_utf8(audit.0.lock().unwrap().clone()).unwrap();
    assert_eq!(events.lines().count(), 3);
    assert!(events.contains("\"who\":\"system:serviceaccount:clinical:medplat-source-adt-feed\""));
}

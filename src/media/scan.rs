//! Virus scanning: every upload is streamed to ClamAV's `clamd` (its `INSTREAM` command) before
//! it is stored, over TCP or a Unix socket. An infected file is refused with `403
//! MCS_MEDIA_NOT_CLEAN` (the Matrix content scanner's code, which Element understands); when
//! `clamd` cannot be reached the upload is refused with `503 M_UNAVAILABLE` (`fail_closed`,
//! the default) or stored with a warning.

use std::path::{Path, PathBuf};
use std::time::Duration;

use http::StatusCode;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::config::ClamavConfig;
use crate::error::{Error, Result};

/// Bytes sent to `clamd` per chunk (its default `StreamMaxLength` is far above this).
const CHUNK: usize = 1024 * 1024;
/// Longest wait for `clamd` to connect, take a chunk, or answer.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Address {
    Tcp(String),
    Unix(PathBuf),
}

/// What `clamd` said of a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Clean,
    /// The name of what was found.
    Infected(String),
}

pub struct Scanner {
    address: Address,
    fail_closed: bool,
}

impl Scanner {
    /// The scanner `config` asks for; `None` when scanning is off (no address).
    pub fn new(config: &ClamavConfig) -> Result<Option<Self>> {
        let address = config.address.trim();
        if address.is_empty() {
            return Ok(None);
        }
        let address = if let Some(host_port) = address.strip_prefix("tcp://") {
            if !host_port.contains(':') {
                return Err(Error::internal(
                    "media.clamav.address: tcp://HOST:PORT is needed",
                ));
            }
            Address::Tcp(host_port.to_owned())
        } else if let Some(path) = address.strip_prefix("unix:") {
            Address::Unix(PathBuf::from(path))
        } else {
            return Err(Error::internal(
                "media.clamav.address must be tcp://HOST:PORT or unix:/PATH",
            ));
        };
        Ok(Some(Self {
            address,
            fail_closed: config.fail_closed,
        }))
    }

    /// Scans a received file; `Ok` when it may be stored.
    pub async fn check(&self, path: &Path) -> Result<()> {
        match self.scan(path).await {
            Ok(Verdict::Clean) => Ok(()),
            Ok(Verdict::Infected(name)) => {
                tracing::warn!(signature = %name, "infected upload refused");
                Err(Error::custom(
                    StatusCode::FORBIDDEN,
                    "MCS_MEDIA_NOT_CLEAN",
                    "The file did not pass the virus scan",
                ))
            }
            Err(error) if self.fail_closed => {
                tracing::error!(%error, "virus scanner unavailable: upload refused");
                Err(Error::custom(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "M_UNAVAILABLE",
                    "The virus scanner is unavailable; try again later",
                ))
            }
            Err(error) => {
                tracing::warn!(%error, "virus scanner unavailable: upload stored unscanned");
                Ok(())
            }
        }
    }

    /// Streams the file to `clamd` and reads its verdict.
    pub async fn scan(&self, path: &Path) -> std::io::Result<Verdict> {
        let file = tokio::fs::File::open(path).await?;
        match &self.address {
            Address::Tcp(host_port) => {
                let socket = step(tokio::net::TcpStream::connect(host_port)).await?;
                instream(socket, file).await
            }
            Address::Unix(path) => {
                let socket = step(tokio::net::UnixStream::connect(path)).await?;
                instream(socket, file).await
            }
        }
    }
}

async fn step<T>(future: impl Future<Output = std::io::Result<T>>) -> std::io::Result<T> {
    tokio::time::timeout(STEP_TIMEOUT, future)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "clamd did not answer"))?
}

/// The `INSTREAM` exchange: length-prefixed chunks, a zero length, then one NUL-ended answer.
async fn instream<S>(mut socket: S, mut file: impl AsyncRead + Unpin) -> std::io::Result<Verdict>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let sent = async {
        step(socket.write_all(b"zINSTREAM\0")).await?;
        let mut buffer = vec![0u8; CHUNK];
        loop {
            let read = file.read(&mut buffer).await?;
            if read == 0 {
                break;
            }
            let mut chunk = (read as u32).to_be_bytes().to_vec();
            chunk.extend_from_slice(&buffer[..read]);
            step(socket.write_all(&chunk)).await?;
        }
        step(socket.write_all(&[0, 0, 0, 0])).await
    }
    .await;
    // clamd may stop reading early (a size limit) and answer why: read the answer either way.
    let mut answer = Vec::new();
    let read = step(async {
        let mut byte = [0u8; 1];
        while answer.len() < 4096 {
            if socket.read(&mut byte).await? == 0 || byte[0] == 0 {
                break;
            }
            answer.push(byte[0]);
        }
        Ok(())
    })
    .await;
    let answer = String::from_utf8_lossy(&answer).trim().to_owned();
    if answer.is_empty() {
        sent?;
        read?;
    }
    verdict(&answer)
}

/// Reads `clamd`'s answer: `stream: OK`, `stream: NAME FOUND`, or an error.
fn verdict(answer: &str) -> std::io::Result<Verdict> {
    let body = answer.strip_prefix("stream:").unwrap_or(answer).trim();
    if body == "OK" {
        Ok(Verdict::Clean)
    } else if let Some(name) = body.strip_suffix("FOUND") {
        Ok(Verdict::Infected(name.trim().to_owned()))
    } else {
        Err(std::io::Error::other(format!("clamd answered {answer:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_and_addresses_are_read() {
        assert_eq!(verdict("stream: OK").unwrap(), Verdict::Clean);
        assert_eq!(
            verdict("stream: Eicar-Test-Signature FOUND").unwrap(),
            Verdict::Infected("Eicar-Test-Signature".into())
        );
        assert!(verdict("INSTREAM size limit exceeded. ERROR").is_err());
        let config = |address: &str| ClamavConfig {
            address: address.into(),
            fail_closed: true,
        };
        assert!(Scanner::new(&config("")).unwrap().is_none());
        let tcp = Scanner::new(&config("tcp://127.0.0.1:3310"))
            .unwrap()
            .unwrap();
        assert_eq!(tcp.address, Address::Tcp("127.0.0.1:3310".into()));
        let unix = Scanner::new(&config("unix:/run/clamav/clamd.ctl"))
            .unwrap()
            .unwrap();
        assert_eq!(unix.address, Address::Unix("/run/clamav/clamd.ctl".into()));
        assert!(Scanner::new(&config("clamd.example:3310")).is_err());
        assert!(Scanner::new(&config("tcp://nohost")).is_err());
    }

    #[tokio::test]
    async fn the_instream_exchange_is_framed_as_clamd_expects() {
        let (client, mut server) = tokio::io::duplex(1 << 20);
        let fake_clamd = tokio::spawn(async move {
            let mut received = Vec::new();
            let mut byte = [0u8; 1];
            // The command, up to its NUL.
            loop {
                server.read_exact(&mut byte).await.unwrap();
                if byte[0] == 0 {
                    break;
                }
                received.push(byte[0]);
            }
            assert_eq!(received, b"zINSTREAM");
            let mut content = Vec::new();
            loop {
                let mut length = [0u8; 4];
                server.read_exact(&mut length).await.unwrap();
                let length = u32::from_be_bytes(length) as usize;
                if length == 0 {
                    break;
                }
                let mut chunk = vec![0u8; length];
                server.read_exact(&mut chunk).await.unwrap();
                content.extend_from_slice(&chunk);
            }
            let answer: &[u8] = if content == b"bad bytes" {
                b"stream: Test.Sig FOUND\0"
            } else {
                b"stream: OK\0"
            };
            server.write_all(answer).await.unwrap();
        });
        let verdict = instream(client, &b"bad bytes"[..]).await.unwrap();
        assert_eq!(verdict, Verdict::Infected("Test.Sig".into()));
        fake_clamd.await.unwrap();
    }
}

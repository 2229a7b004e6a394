//! Just enough of the CQL native protocol (v4) to tell that a node answers:
//! a STARTUP frame that must get READY, and a QUERY whose text rows are
//! read back (`system.local` / `system.peers`). Frame encoding and decoding
//! are pure functions; `startup` and `query_text` do the TCP. No
//! compression, no authentication, no prepared statements, no paging.

use anyhow::{Context, Result, bail};
use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

const REQUEST_V4: u8 = 0x04;
const RESPONSE_V4: u8 = 0x84;
const HEADER_LEN: usize = 9;
/// The protocol's own bound on a frame body (256 MiB).
const MAX_BODY: usize = 256 * 1024 * 1024;

const OP_ERROR: u8 = 0x00;
const OP_STARTUP: u8 = 0x01;
const OP_READY: u8 = 0x02;
const OP_AUTHENTICATE: u8 = 0x03;
const OP_QUERY: u8 = 0x07;
const OP_RESULT: u8 = 0x08;

const FLAG_TRACING: u8 = 0x02;
const FLAG_CUSTOM_PAYLOAD: u8 = 0x04;
const FLAG_WARNING: u8 = 0x08;

const RESULT_ROWS: i32 = 0x0002;
const CONSISTENCY_ONE: u16 = 0x0001;

/// A decoded response body.
#[derive(Debug, PartialEq, Eq)]
pub enum Response {
    Ready,
    /// The server wants credentials (it answers, but not for us).
    Authenticate(String),
    Error {
        code: i32,
        message: String,
    },
    /// Rows of cells (`None` is a null cell).
    Rows(Vec<Vec<Option<Vec<u8>>>>),
    /// A RESULT of another kind (void, set keyspace, schema change, …).
    Result(i32),
    Other(u8),
}

/// A response frame header.
#[derive(Debug, PartialEq, Eq)]
pub struct Header {
    pub flags: u8,
    pub stream: i16,
    pub opcode: u8,
    pub length: usize,
}

fn frame(stream: i16, opcode: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&[REQUEST_V4, 0]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.push(opcode);
    // Bodies here are a few dozen bytes; the cast cannot truncate.
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// STARTUP with `CQL_VERSION: 3.0.0` (a [string map] of one entry).
pub fn startup_frame(stream: i16) -> Vec<u8> {
    let mut body = 1u16.to_be_bytes().to_vec();
    put_string(&mut body, "CQL_VERSION");
    put_string(&mut body, "3.0.0");
    frame(stream, OP_STARTUP, &body)
}

/// QUERY of `cql` at consistency ONE with no values and no flags.
pub fn query_frame(stream: i16, cql: &str) -> Vec<u8> {
    let mut body = (cql.len() as u32).to_be_bytes().to_vec();
    body.extend_from_slice(cql.as_bytes());
    body.extend_from_slice(&CONSISTENCY_ONE.to_be_bytes());
    body.push(0);
    frame(stream, OP_QUERY, &body)
}

pub fn parse_header(bytes: &[u8; HEADER_LEN]) -> Result<Header> {
    if bytes[0] != RESPONSE_V4 {
        bail!(
            "not a CQL v4 response frame (version byte {:#04x})",
            bytes[0]
        );
    }
    let length = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]) as usize;
    if length > MAX_BODY {
        bail!("CQL frame body of {length} bytes is over the protocol's 256 MiB");
    }
    Ok(Header {
        flags: bytes[1],
        stream: i16::from_be_bytes([bytes[2], bytes[3]]),
        opcode: bytes[4],
        length,
    })
}

/// Reads the protocol's notations from a body, failing (never panicking)
/// on a short body.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.rest.len() {
            bail!(
                "CQL body ends early: {n} bytes wanted, {} left",
                self.rest.len()
            );
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }
    fn u16(&mut self) -> Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn i32(&mut self) -> Result<i32> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn count(&mut self) -> Result<usize> {
        let n = self.i32()?;
        usize::try_from(n).with_context(|| format!("negative count {n} in CQL body"))
    }
    fn string(&mut self) -> Result<String> {
        let n = self.u16()? as usize;
        Ok(String::from_utf8_lossy(self.take(n)?).into_owned())
    }
    /// [bytes]: a negative length is null.
    fn bytes(&mut self) -> Result<Option<&'a [u8]>> {
        let n = self.i32()?;
        match usize::try_from(n) {
            Ok(n) => Ok(Some(self.take(n)?)),
            Err(_) => Ok(None),
        }
    }
    /// Skips an [option] column type, with the types it nests.
    fn skip_type(&mut self) -> Result<()> {
        match self.u16()? {
            0x0000 => {
                self.string()?;
            }
            0x0020 | 0x0022 => self.skip_type()?,
            0x0021 => {
                self.skip_type()?;
                self.skip_type()?;
            }
            0x0030 => {
                self.string()?;
                self.string()?;
                for _ in 0..self.u16()? {
                    self.string()?;
                    self.skip_type()?;
                }
            }
            0x0031 => {
                for _ in 0..self.u16()? {
                    self.skip_type()?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// Decodes a response body, after the tracing id, warnings and custom
/// payload that its flags announce.
pub fn decode(header: &Header, body: &[u8]) -> Result<Response> {
    let mut r = Reader { rest: body };
    if header.flags & FLAG_TRACING != 0 {
        r.take(16)?;
    }
    if header.flags & FLAG_WARNING != 0 {
        for _ in 0..r.u16()? {
            r.string()?;
        }
    }
    if header.flags & FLAG_CUSTOM_PAYLOAD != 0 {
        for _ in 0..r.u16()? {
            r.string()?;
            r.bytes()?;
        }
    }
    Ok(match header.opcode {
        OP_READY => Response::Ready,
        OP_AUTHENTICATE => Response::Authenticate(r.string()?),
        OP_ERROR => Response::Error {
            code: r.i32()?,
            message: r.string()?,
        },
        OP_RESULT => match r.i32()? {
            RESULT_ROWS => Response::Rows(rows(&mut r)?),
            kind => Response::Result(kind),
        },
        op => Response::Other(op),
    })
}

fn rows(r: &mut Reader<'_>) -> Result<Vec<Vec<Option<Vec<u8>>>>> {
    const GLOBAL_TABLES_SPEC: i32 = 0x0001;
    const HAS_MORE_PAGES: i32 = 0x0002;
    const NO_METADATA: i32 = 0x0004;
    let flags = r.i32()?;
    let columns = r.count()?;
    if flags & HAS_MORE_PAGES != 0 {
        r.bytes()?;
    }
    if flags & NO_METADATA == 0 {
        if flags & GLOBAL_TABLES_SPEC != 0 {
            r.string()?;
            r.string()?;
        }
        for _ in 0..columns {
            if flags & GLOBAL_TABLES_SPEC == 0 {
                r.string()?;
                r.string()?;
            }
            r.string()?;
            r.skip_type()?;
        }
    }
    let count = r.count()?;
    let mut out = Vec::new();
    for _ in 0..count {
        let mut row = Vec::with_capacity(columns);
        for _ in 0..columns {
            row.push(r.bytes()?.map(<[u8]>::to_vec));
        }
        out.push(row);
    }
    Ok(out)
}

/// One request and its response over an open connection.
fn exchange(stream: &mut TcpStream, request: &[u8]) -> Result<Response> {
    stream.write_all(request)?;
    let mut head = [0u8; HEADER_LEN];
    stream.read_exact(&mut head)?;
    let header = parse_header(&head)?;
    let mut body = vec![0u8; header.length];
    stream.read_exact(&mut body)?;
    decode(&header, &body)
}

fn connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    match exchange(&mut stream, &startup_frame(0))? {
        Response::Ready => Ok(stream),
        Response::Authenticate(class) => {
            bail!("{addr} answers CQL but wants credentials ({class})")
        }
        Response::Error { code, message } => {
            bail!("{addr} refused STARTUP: error {code:#06x}: {message}")
        }
        other => bail!("{addr} answered STARTUP with {other:?}, not READY"),
    }
}

/// Connects and completes the STARTUP handshake (READY).
pub fn startup(addr: SocketAddr, timeout: Duration) -> Result<()> {
    connect(addr, timeout).map(drop)
}

/// The first column of every row of `cql`, as text.
pub fn query_text(addr: SocketAddr, cql: &str, timeout: Duration) -> Result<Vec<Option<String>>> {
    let mut stream = connect(addr, timeout)?;
    match exchange(&mut stream, &query_frame(1, cql))? {
        Response::Rows(rows) => Ok(rows
            .into_iter()
            .map(|row| {
                row.into_iter()
                    .next()
                    .flatten()
                    .map(|cell| String::from_utf8_lossy(&cell).into_owned())
            })
            .collect()),
        Response::Error { code, message } => {
            bail!("{addr} refused `{cql}`: error {code:#06x}: {message}")
        }
        other => bail!("{addr} answered `{cql}` with {other:?}, not rows"),
    }
}

/// Decodes a whole response frame held in memory (tests only).
#[cfg(test)]
fn decode_frame(bytes: &[u8]) -> Result<Response> {
    let head: [u8; HEADER_LEN] = bytes
        .get(..HEADER_LEN)
        .context("short header")?
        .try_into()?;
    let header = parse_header(&head)?;
    let body = bytes
        .get(HEADER_LEN..HEADER_LEN + header.length)
        .context("short body")?;
    decode(&header, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s
            .bytes()
            .filter(u8::is_ascii_hexdigit)
            .map(|b| match b {
                b'0'..=b'9' => b - b'0',
                b'a'..=b'f' => b - b'a' + 10,
                _ => b - b'A' + 10,
            })
            .collect();
        digits.chunks(2).map(|p| p[0] << 4 | p[1]).collect()
    }

    fn check_encode(got: Vec<u8>, expected: &str) {
        assert_eq!(got, hex(expected));
    }

    /// The decoded frame, or `error: <message>`.
    fn check_decode(frame: &str, expected: &str) {
        let got = match decode_frame(&hex(frame)) {
            Ok(r) => format!("{r:?}"),
            Err(e) => format!("error: {e}"),
        };
        assert_eq!(got, expected, "for {frame}");
    }

    #[test]
    fn requests_encode() {
        // version 4, flags 0, stream 0, STARTUP, length 22:
        // {1 entry: "CQL_VERSION" -> "3.0.0"}
        check_encode(
            startup_frame(0),
            "04 00 0000 01 00000016 0001 000b 43514c5f56455253494f4e 0005 332e302e30",
        );
        // stream 1, QUERY, length 13: long string "SELECT 1", ONE, no flags
        check_encode(
            query_frame(1, "SELECT 1"),
            "04 00 0001 07 0000000f 00000008 53454c4543542031 0001 00",
        );
    }

    #[test]
    fn responses_decode() {
        check_decode("84 00 0000 02 00000000", "Ready");
        check_decode(
            "84 00 0000 03 00000005 0003 616263",
            "Authenticate(\"abc\")",
        );
        check_decode(
            "84 00 0000 00 0000000a 0000000a 0004 6e6f7065",
            "Error { code: 10, message: \"nope\" }",
        );
        check_decode("84 00 0001 08 00000004 00000001", "Result(1)");
        check_decode("84 00 0001 06 00000000", "Other(6)");
        // A warning before the body: ["w"], then READY.
        check_decode("84 08 0000 02 00000005 0001 0001 77", "Ready");
        // A tracing id (16 bytes) before an empty READY.
        check_decode(
            "84 02 0000 02 00000010 00112233445566778899aabbccddeeff",
            "Ready",
        );
    }

    #[test]
    fn rows_decode() {
        // Rows, global table spec system.peers, 1 column data_center varchar,
        // two rows: "us" and null.
        check_decode(
            "84 00 0001 08 00000038 00000002 \
             00000001 00000001 0006 73797374656d 0005 7065657273 \
             000b 646174615f63656e746572 000d \
             00000002 00000002 7573 ffffffff",
            "Rows([[Some([117, 115])], [None]])",
        );
        // Per-column table specs, a list<map<text,int>> column, a paging
        // state and no rows.
        check_decode(
            "84 00 0001 08 00000027 00000002 \
             00000002 00000001 00000002 abcd \
             0001 6b 0001 74 0001 63 0020 0021 000d 0009 \
             00000000",
            "Rows([])",
        );
    }

    #[test]
    fn bad_frames_fail() {
        check_decode(
            "04 00 0000 02 00000000",
            "error: not a CQL v4 response frame (version byte 0x04)",
        );
        check_decode(
            "84 00 0000 02 7fffffff",
            "error: CQL frame body of 2147483647 bytes is over the protocol's 256 MiB",
        );
        check_decode(
            "84 00 0000 00 00000006 0000000a 0004",
            "error: CQL body ends early: 4 bytes wanted, 0 left",
        );
        check_decode(
            "84 00 0001 08 0000000c 00000002 00000004 ffffffff",
            "error: negative count -1 in CQL body",
        );
    }
}

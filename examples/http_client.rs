//! An HTTP/1.1 client with hyper on edgeloop: one `GET`, then prints the status and
//! the body.
//!
//! ```text
//! cargo run --features hyper --example http_client -- http://127.0.0.1:8080/path
//! ```
//!
//! Prints `status: 200 OK` (the response's status), then the body as it came. Plain
//! `http://` only (no TLS); the host may be an IP address or a name. Exits 1 with a
//! message on stderr if the URL is not one it can fetch or the exchange fails, 2 on
//! a bad command line.

use std::io::{self, Write};
use std::process::ExitCode;

use bytes::Bytes;
use edgeloop::hyper::HyperIo;
use edgeloop::net::TcpStream;
use http_body_util::{BodyExt, Empty};
use hyper::{Request, Uri};

const USAGE: &str = "\
usage: http_client URL

Sends `GET URL` over HTTP/1.1 (hyper on edgeloop) and prints `status: CODE REASON`,
then the response's body. URL: http://HOST[:PORT][/PATH][?QUERY]
";

/// Fetches `url`: returns the status line to print and the body.
async fn get(url: Uri) -> Result<(String, Bytes), Box<dyn std::error::Error>> {
    if url.scheme_str() != Some("http") {
        return Err(format!("`{url}`: only http:// URLs are supported").into());
    }
    let host = url.host().ok_or_else(|| format!("`{url}` has no host"))?;
    let port = url.port_u16().unwrap_or(80);
    let stream = TcpStream::connect(format!("{host}:{port}")).await?;
    stream.set_nodelay(true)?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(HyperIo::new(stream)).await?;
    // The connection does the I/O; it ends when `sender` is dropped.
    let connection = edgeloop::spawn(connection);

    let authority = url.authority().map_or(host, |a| a.as_str()).to_owned();
    let path = url.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let request = Request::get(path)
        .header(hyper::header::HOST, authority)
        .header(hyper::header::USER_AGENT, "edgeloop-http-client")
        .body(Empty::<Bytes>::new())?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    let line = format!(
        "status: {} {}",
        status.as_str(),
        status.canonical_reason().unwrap_or("")
    );

    drop(sender);
    connection.await??;
    Ok((line.trim_end().to_owned(), body))
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let url = match (args.next(), args.next()) {
        (Some(flag), None) if flag == "--help" || flag == "-h" => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        (Some(url), None) => match url.parse::<Uri>() {
            Ok(url) => url,
            Err(e) => {
                eprintln!("http_client: `{url}`: {e}");
                return ExitCode::from(2);
            }
        },
        _ => {
            eprint!("http_client: expected one URL\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match edgeloop::block_on(get(url)) {
        Ok((status, body)) => {
            let mut stdout = io::stdout().lock();
            let printed = writeln!(stdout, "{status}")
                .and_then(|()| stdout.write_all(&body))
                .and_then(|()| stdout.flush());
            match printed {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("http_client: writing to stdout: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(e) => {
            eprintln!("http_client: {e}");
            ExitCode::FAILURE
        }
    }
}

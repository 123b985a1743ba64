//! A command for the hostile tests: tries one thing a confined command may or may not do
//! and prints `reached` (exit 0, followed by what came back, if anything) or
//! `refused: <error>` (exit 1).
//!
//! `confinement-probe connect-tcp ADDR | send-udp ADDR | connect-unix PATH`
//! `confinement-probe proxy-get URL | proxy-connect HOST:PORT`: through the proxy that
//! `http_proxy` names, a GET of an absolute `http://` URL, or a tunnel to HOST:PORT that
//! then carries a plain `GET /`; `proxy-flood N URL` holds N idle connections to the proxy
//! open, then tries that GET.

use std::io::{Read, Write};

/// Connects to the proxy named by `http_proxy`.
fn proxy() -> std::io::Result<std::net::TcpStream> {
    let url = std::env::var("http_proxy").map_err(|_| std::io::Error::other("http_proxy is not set"))?;
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    std::net::TcpStream::connect(addr)
}

fn read_all(stream: &mut std::net::TcpStream) -> std::io::Result<String> {
    let mut out = Vec::new();
    stream.read_to_end(&mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

fn proxy_get(url: &str) -> std::io::Result<String> {
    let mut stream = proxy()?;
    write!(stream, "GET {url} HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n")?;
    read_all(&mut stream)
}

fn proxy_connect(target: &str) -> std::io::Result<String> {
    let mut stream = proxy()?;
    write!(stream, "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n")?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte)? == 1 {
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    if !head.starts_with("HTTP/1.1 200") {
        return Ok(head + &read_all(&mut stream)?);
    }
    write!(stream, "GET / HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n")?;
    Ok(head + &read_all(&mut stream)?)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["connect-tcp", addr] => {
            std::net::TcpStream::connect(addr).and_then(|mut s| s.write_all(b"GET / HTTP/1.0\r\n\r\n")).map(|_| String::new())
        }
        ["send-udp", addr] => std::net::UdpSocket::bind("0.0.0.0:0").and_then(|s| s.send_to(b"ping", addr)).map(|_| String::new()),
        ["connect-unix", path] => std::os::unix::net::UnixStream::connect(path).map(|_| String::new()),
        ["proxy-get", url] => proxy_get(url),
        ["proxy-connect", target] => proxy_connect(target),
        ["proxy-flood", n, url] => {
            (0..n.parse::<usize>().unwrap_or(0)).map(|_| proxy()).collect::<std::io::Result<Vec<_>>>().and_then(|_held| proxy_get(url))
        }
        _ => {
            eprintln!(
                "usage: confinement-probe connect-tcp ADDR | send-udp ADDR | connect-unix PATH | proxy-get URL | proxy-connect HOST:PORT | proxy-flood N URL"
            );
            std::process::exit(2);
        }
    };
    match result {
        Ok(answer) => println!("reached {answer}"),
        Err(e) => {
            println!("refused: {e}");
            std::process::exit(1);
        }
    }
}

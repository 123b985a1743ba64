//! A command for the hostile tests: tries one thing a confined command must not do and
//! prints `reached` (exit 0) or `refused: <error>` (exit 1).
//!
//! `confinement-probe connect-tcp ADDR | send-udp ADDR | connect-unix PATH`

use std::io::Write;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["connect-tcp", addr] => std::net::TcpStream::connect(addr).and_then(|mut s| s.write_all(b"GET / HTTP/1.0\r\n\r\n")),
        ["send-udp", addr] => std::net::UdpSocket::bind("0.0.0.0:0").and_then(|s| s.send_to(b"ping", addr)).map(|_| ()),
        ["connect-unix", path] => std::os::unix::net::UnixStream::connect(path).map(|_| ()),
        _ => {
            eprintln!("usage: confinement-probe connect-tcp ADDR | send-udp ADDR | connect-unix PATH");
            std::process::exit(2);
        }
    };
    match result {
        Ok(()) => println!("reached"),
        Err(e) => {
            println!("refused: {e}");
            std::process::exit(1);
        }
    }
}

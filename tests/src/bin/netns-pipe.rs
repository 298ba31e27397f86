//! `netns-pipe PORT`: connects to `127.0.0.1:PORT` and copies stdin to the
//! socket and the socket to stdout. `netns-pipe --probe PORT` only checks
//! that something listens (exit 0 or 1).
//!
//! Run under `nsenter --net=/proc/<pid>/ns/net`, it lets a test reach a
//! server that lives in its own network namespace (the Samba AD DC, whose
//! ports are fixed): see `paddock_tests::samba`.

use std::{
    io::{self, Write as _},
    net::{Shutdown, TcpStream},
    process::ExitCode,
};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (probe, port) = match args.as_slice() {
        [flag, port] if flag == "--probe" => (true, port),
        [port] => (false, port),
        _ => {
            eprintln!("usage: netns-pipe [--probe] PORT");
            return ExitCode::from(64);
        }
    };
    let Ok(port) = port.parse::<u16>() else {
        eprintln!("netns-pipe: bad port {port:?}");
        return ExitCode::from(64);
    };
    let Ok(stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return ExitCode::from(1);
    };
    if probe {
        return ExitCode::SUCCESS;
    }
    let Ok(mut to_socket) = stream.try_clone() else {
        return ExitCode::from(1);
    };
    let upstream = std::thread::spawn(move || {
        let _ = io::copy(&mut io::stdin().lock(), &mut to_socket);
        let _ = to_socket.shutdown(Shutdown::Write);
    });
    // Stdout is line-buffered: flush every chunk, LDAP is binary.
    let mut from_socket = stream;
    let mut stdout = io::stdout().lock();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match io::Read::read(&mut from_socket, &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if stdout
                    .write_all(&buf[..n])
                    .and_then(|()| stdout.flush())
                    .is_err()
                {
                    break;
                }
            }
        }
    }
    drop(upstream);
    ExitCode::SUCCESS
}

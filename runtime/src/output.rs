//! Writing to stdout: JSON documents, and a buffered handle that treats a closed pipe (e.g.
//! `| head`) as the reader being done rather than as an error.

use crate::error::Result;
use std::io::{BufWriter, ErrorKind, Stdout, Write};

pub struct Out(pub BufWriter<Stdout>);

impl Out {
    pub fn stdout() -> Out {
        Out(BufWriter::new(std::io::stdout()))
    }

    pub fn flush(&mut self) -> Result<()> {
        quiet_pipe(self.0.flush())
    }
}

/// A closed stdout is not a failure: the reader has what it wanted.
pub fn quiet_pipe(r: std::io::Result<()>) -> Result<()> {
    match r {
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}

pub fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    let mut o = Out::stdout();
    let r = serde_json::to_writer_pretty(&mut o.0, v)
        .map_err(std::io::Error::from)
        .and_then(|_| writeln!(o.0));
    quiet_pipe(r)?;
    o.flush()
}

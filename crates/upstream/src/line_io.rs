//! Reading and writing newline-delimited JSON-RPC: the stdio links to the
//! servers Warden starts, and `warden stdio`'s own stdin and stdout.
//!
//! Every message written to such a link goes through [`write_message`],
//! which frames it with [`warden_protocol::line::one_line`]: exactly one
//! line per message, whatever its bytes, so no reader on the far side can
//! find a second message Warden never judged inside it. Reading uses
//! [`read_line_capped`], which bounds a line's length and splits either on
//! LF alone (what a server writes to Warden) or on CR and LF (what an
//! agent writes to `warden stdio`, read as the most permissive line reader
//! would).

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};
use warden_protocol::line::{self, LineError};

/// Where a line ends, for [`read_line_capped`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineEnds {
    /// LF only: a server's stdout, where Warden is the only reader.
    Lf,
    /// CR or LF (a CRLF leaves an empty line, which callers skip): input
    /// that Warden passes on to readers that split on either.
    CrOrLf,
}

/// Why a message was not written.
#[derive(Debug, thiserror::Error)]
pub enum WriteLineError {
    /// The message is not one JSON-RPC message; nothing was written.
    #[error(transparent)]
    NotAMessage(#[from] LineError),
    /// The link is gone.
    #[error("write failed")]
    Io(#[from] std::io::Error),
}

/// Write `message` as exactly one line, and flush.
pub async fn write_message(
    writer: &mut (impl AsyncWrite + Unpin),
    message: &[u8],
) -> Result<(), WriteLineError> {
    let framed = line::one_line(message)?;
    writer.write_all(&framed).await?;
    writer.write_all(line::LINE_END).await?;
    writer.flush().await?;
    Ok(())
}

/// Read one line into `line` (its line end included), at most `limit`
/// bytes of it. `Some(true)`: a whole line; `Some(false)`: a line over the
/// limit, skipped to its end; `None`: end of stream.
pub async fn read_line_capped(
    reader: &mut (impl AsyncBufRead + Unpin),
    line: &mut Vec<u8>,
    limit: usize,
    ends: LineEnds,
) -> std::io::Result<Option<bool>> {
    let is_end = |byte: u8| match ends {
        LineEnds::Lf => byte == b'\n',
        LineEnds::CrOrLf => line::is_line_end(byte),
    };
    let mut whole = true;
    loop {
        let buffer = reader.fill_buf().await?;
        if buffer.is_empty() {
            return Ok((!line.is_empty() || !whole).then_some(whole));
        }
        let (chunk, found) = match buffer.iter().position(|&b| is_end(b)) {
            Some(end) => (&buffer[..=end], true),
            None => (buffer, false),
        };
        let used = chunk.len();
        if whole && line.len() + used <= limit {
            line.extend_from_slice(chunk);
        } else {
            whole = false;
            line.clear();
        }
        reader.consume(used);
        if found {
            return Ok(Some(whole));
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::BufReader;

    use super::*;

    async fn lines(input: &[u8], limit: usize, ends: LineEnds) -> Vec<(bool, String)> {
        let mut reader = BufReader::with_capacity(4, input);
        let mut line = Vec::new();
        let mut seen = Vec::new();
        while let Some(whole) = read_line_capped(&mut reader, &mut line, limit, ends)
            .await
            .expect("read")
        {
            seen.push((whole, String::from_utf8_lossy(&line).into_owned()));
            line.clear();
        }
        seen
    }

    #[tokio::test]
    async fn lines_over_the_limit_are_skipped_whole() {
        assert_eq!(
            lines(b"short\nthis line is too long\nok\nlast", 8, LineEnds::Lf).await,
            vec![
                (true, "short\n".to_owned()),
                (false, String::new()),
                (true, "ok\n".to_owned()),
                (true, "last".to_owned()),
            ]
        );
    }

    #[tokio::test]
    async fn a_carriage_return_ends_a_line_only_where_asked() {
        let input = b"{\"a\":1}\r{\"b\":2}\r\n{\"c\":3}\n";
        assert_eq!(
            lines(input, 64, LineEnds::CrOrLf).await,
            vec![
                (true, "{\"a\":1}\r".to_owned()),
                (true, "{\"b\":2}\r".to_owned()),
                (true, "\n".to_owned()),
                (true, "{\"c\":3}\n".to_owned()),
            ]
        );
        assert_eq!(
            lines(input, 64, LineEnds::Lf).await,
            vec![
                (true, "{\"a\":1}\r{\"b\":2}\r\n".to_owned()),
                (true, "{\"c\":3}\n".to_owned()),
            ]
        );
    }

    #[tokio::test]
    async fn a_message_is_written_as_one_line_or_not_at_all() {
        let mut out = Vec::new();
        write_message(&mut out, b"{\"a\":\r\n1,\"t\":\"x\xe2\x80\xa8y\"}\n")
            .await
            .expect("written");
        assert_eq!(out, b"{\"a\":1,\"t\":\"x\\u2028y\"}\n");
        let mut out = Vec::new();
        let refused = write_message(&mut out, b"{\"a\":1}\r{\"b\":2}").await;
        assert!(matches!(refused, Err(WriteLineError::NotAMessage(_))));
        assert!(out.is_empty(), "nothing is written of a refused message");
    }
}

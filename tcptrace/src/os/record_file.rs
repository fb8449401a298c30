//! The files of `tcptrace record`: created and opened here, buffered, with errors that name the
//! file. The format itself is [`crate::core::record`]'s.

use std::{
    fs::File,
    io::{self, BufReader, BufWriter},
    path::Path,
};

use crate::core::record::{Header, Writer};

/// Both directions buffer 64 KiB: at 200,000 events a second (93 bytes each in the file) that
/// is ~300 system calls a second, where the default 8 KiB would make ten times as many.
const BUFFER_BYTES: usize = 64 << 10;

/// Creates `path` and writes the header. An existing file is truncated and overwritten, as
/// `tcpdump -w` does; its mode follows the umask. The header is flushed at once, so that a
/// recorder killed before its first events leaves a file that says so.
pub fn create(path: &Path, header: &Header) -> io::Result<Writer<BufWriter<File>>> {
    let file = File::create(path).map_err(|err| naming(err, "cannot create", path))?;
    let written = Writer::new(BufWriter::with_capacity(BUFFER_BYTES, file), header)
        .and_then(|mut writer| writer.flush().map(|()| writer));
    written.map_err(|err| naming(err, "cannot write to", path))
}

/// Opens `path` for [`crate::core::record::Reader`].
pub fn open(path: &Path) -> io::Result<BufReader<File>> {
    let file = File::open(path).map_err(|err| naming(err, "cannot open", path))?;
    Ok(BufReader::with_capacity(BUFFER_BYTES, file))
}

/// `err` with the file in its message, keeping its kind for callers that match on it.
fn naming(err: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(err.kind(), format!("{what} {}: {err}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::record::{Frame, Reader};

    /// A path of this test's own in the temporary directory, removed on drop.
    struct TempPath(std::path::PathBuf);

    impl TempPath {
        fn new(name: &str) -> Self {
            Self(std::env::temp_dir().join(format!(
                "tcptrace-record-file-{}-{name}",
                std::process::id()
            )))
        }
    }

    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn a_created_file_reads_back_and_an_existing_one_is_overwritten() {
        let path = TempPath::new("round-trip");
        std::fs::write(&path.0, vec![0xee; 1000]).unwrap();
        let header = Header {
            hostname: "db-1".into(),
            ..Header::default()
        };
        let mut writer = create(&path.0, &header).unwrap();
        writer.event(&[1, 2, 3]).unwrap();
        writer.batch(7).unwrap();
        drop(writer.end(9).unwrap());

        let (mut reader, read_header) = Reader::new(open(&path.0).unwrap()).unwrap();
        assert_eq!(read_header, header);
        assert_eq!(reader.next_frame().unwrap(), Some(Frame::Event(&[1, 2, 3])));
        assert_eq!(
            reader.next_frame().unwrap(),
            Some(Frame::Batch { now_ns: 7 })
        );
        assert_eq!(reader.next_frame().unwrap(), Some(Frame::End { now_ns: 9 }));
        assert_eq!(reader.next_frame().unwrap(), None);
    }

    #[test]
    fn the_header_is_on_disk_before_any_frame() {
        let path = TempPath::new("header-first");
        let writer = create(&path.0, &Header::default()).unwrap();
        assert!(Reader::new(open(&path.0).unwrap()).is_ok());
        drop(writer);
    }

    #[test]
    fn errors_name_the_file() {
        let path = TempPath::new("missing").0.join("nested");
        let err = open(&path).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert_eq!(
            err.to_string(),
            format!(
                "cannot open {}: No such file or directory (os error 2)",
                path.display()
            )
        );
        let err = create(&path, &Header::default()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("cannot create {}: ", path.display())),
            "{err}"
        );
    }
}

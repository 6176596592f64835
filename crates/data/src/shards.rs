//! Token shard files: a 24-byte header then little-endian token ids.
//!
//! Header: magic `PDTOKENS` (8 bytes), format version u32, bytes per token u32 (2 or 4),
//! token count u64. A shard is written under a temporary name and renamed when complete.

use crate::{DataError, Result};
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"PDTOKENS";
pub const SHARD_VERSION: u32 = 1;

pub struct ShardWriter {
    final_path: PathBuf,
    tmp_path: PathBuf,
    out: BufWriter<File>,
    width: u32,
    count: u64,
}

impl ShardWriter {
    pub fn create(path: &Path, vocab_size: usize) -> Result<Self> {
        let tmp_path = path.with_extension("bin.tmp");
        let f = File::create(&tmp_path).map_err(|e| DataError::io(&tmp_path, e))?;
        let width = if vocab_size <= 1 << 16 { 2 } else { 4 };
        let mut w = Self {
            final_path: path.to_path_buf(),
            tmp_path,
            out: BufWriter::with_capacity(1 << 20, f),
            width,
            count: 0,
        };
        w.write_header()?;
        Ok(w)
    }

    fn write_header(&mut self) -> Result<()> {
        let mut h = Vec::with_capacity(24);
        h.extend_from_slice(MAGIC);
        h.extend_from_slice(&SHARD_VERSION.to_le_bytes());
        h.extend_from_slice(&self.width.to_le_bytes());
        h.extend_from_slice(&self.count.to_le_bytes());
        self.out.write_all(&h).map_err(|e| DataError::io(&self.tmp_path, e))
    }

    pub fn push(&mut self, ids: &[u32]) -> Result<()> {
        let mut buf = Vec::with_capacity(ids.len() * self.width as usize);
        for &id in ids {
            if self.width == 2 {
                buf.extend_from_slice(&(id as u16).to_le_bytes());
            } else {
                buf.extend_from_slice(&id.to_le_bytes());
            }
        }
        self.count += ids.len() as u64;
        self.out.write_all(&buf).map_err(|e| DataError::io(&self.tmp_path, e))
    }

    pub fn len(&self) -> u64 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Rewrites the header with the final count, fsyncs and renames into place.
    pub fn finish(mut self) -> Result<PathBuf> {
        let io = |e| DataError::io(&self.tmp_path, e);
        self.out.flush().map_err(io)?;
        let mut f = self.out.into_inner().map_err(|e| DataError::io(&self.tmp_path, e.into_error()))?;
        f.seek(SeekFrom::Start(16)).map_err(io)?;
        f.write_all(&self.count.to_le_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&self.tmp_path, &self.final_path).map_err(|e| DataError::io(&self.final_path, e))?;
        Ok(self.final_path)
    }
}

/// Reads a whole shard.
pub fn read_shard(path: &Path) -> Result<Vec<u32>> {
    let mut f = File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut h = [0u8; 24];
    let bad = |msg: &str| DataError::Invalid(format!("{}: {msg}; run `plandiff prepare` again", path.display()));
    f.read_exact(&mut h).map_err(|_| bad("too short to be a token shard"))?;
    if &h[..8] != MAGIC {
        return Err(bad("not a plandiff token shard"));
    }
    let version = u32::from_le_bytes(h[8..12].try_into().unwrap_or_default());
    if version != SHARD_VERSION {
        return Err(bad(&format!("shard format version {version}, this plandiff reads {SHARD_VERSION}")));
    }
    let width = u32::from_le_bytes(h[12..16].try_into().unwrap_or_default()) as usize;
    let count = u64::from_le_bytes(h[16..24].try_into().unwrap_or_default()) as usize;
    if width != 2 && width != 4 {
        return Err(bad("bad token width"));
    }
    let mut raw = Vec::new();
    f.read_to_end(&mut raw).map_err(|e| DataError::io(path, e))?;
    if raw.len() != count * width {
        return Err(bad(&format!("truncated: header says {count} tokens, file holds {}", raw.len() / width)));
    }
    Ok(if width == 2 {
        raw.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]]) as u32).collect()
    } else {
        raw.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_read_and_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("train-00000.bin");
        let mut w = ShardWriter::create(&p, 1000).unwrap();
        w.push(&[1, 2, 999]).unwrap();
        w.push(&[7]).unwrap();
        w.finish().unwrap();
        assert_eq!(read_shard(&p).unwrap(), vec![1, 2, 999, 7]);
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 1]).unwrap();
        assert!(read_shard(&p).unwrap_err().to_string().contains("truncated"));
        let mut w = ShardWriter::create(&p, 100_000).unwrap();
        w.push(&[70_000]).unwrap();
        w.finish().unwrap();
        assert_eq!(read_shard(&p).unwrap(), vec![70_000]);
    }
}

//! Streaming document reader: plain text (blank-line separated paragraphs) or JSONL with a
//! `text` field. One document is in memory at a time.

use crate::{DataError, Result};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

/// Expands directories (sorted, `.txt`/`.md`/`.jsonl`/`.ndjson` files) and checks that every
/// input exists.
pub fn expand_inputs(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in inputs {
        let meta = std::fs::metadata(p).map_err(|e| DataError::io(p, e))?;
        if meta.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| DataError::io(p, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| matches!(f.extension().and_then(|e| e.to_str()), Some("txt" | "md" | "jsonl" | "ndjson")))
                .collect();
            files.sort();
            out.extend(files);
        } else {
            out.push(p.clone());
        }
    }
    if out.is_empty() {
        return Err(DataError::Invalid(
            "no input files found (give .txt or .jsonl files or folders holding them)".into(),
        ));
    }
    Ok(out)
}

fn is_jsonl(p: &Path) -> bool {
    matches!(p.extension().and_then(|e| e.to_str()), Some("jsonl" | "ndjson"))
}

/// The longest line a corpus may have (a JSONL record, or a line of a paragraph).
pub const MAX_LINE_BYTES: u64 = 8 << 20;

/// Iterator over the documents of one file. Tracks bytes read for progress reporting.
pub struct DocumentReader {
    path: PathBuf,
    reader: BufReader<File>,
    jsonl: bool,
    line_no: usize,
    pub bytes_read: u64,
    done: bool,
}

impl DocumentReader {
    pub fn open(path: &Path) -> Result<Self> {
        let f = File::open(path).map_err(|e| DataError::io(path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            reader: BufReader::with_capacity(1 << 20, f),
            jsonl: is_jsonl(path),
            line_no: 0,
            bytes_read: 0,
            done: false,
        })
    }

    fn read_line(&mut self, buf: &mut String) -> Result<bool> {
        use std::io::Read as _;
        buf.clear();
        let mut raw = Vec::new();
        let n = (&mut self.reader)
            .take(MAX_LINE_BYTES + 1)
            .read_until(b'\n', &mut raw)
            .map_err(|e| DataError::io(&self.path, e))?;
        if n == 0 {
            return Ok(false);
        }
        if n as u64 > MAX_LINE_BYTES {
            return Err(DataError::Parse {
                path: self.path.display().to_string(),
                line: self.line_no + 1,
                msg: format!(
                    "a line longer than {} MB; break the text into lines and paragraphs",
                    MAX_LINE_BYTES >> 20
                ),
            });
        }
        self.line_no += 1;
        self.bytes_read += n as u64;
        let s = std::str::from_utf8(&raw).map_err(|_| DataError::Parse {
            path: self.path.display().to_string(),
            line: self.line_no,
            msg: "not valid UTF-8; convert the file to UTF-8 first".into(),
        })?;
        buf.push_str(s);
        Ok(true)
    }

    fn next_doc(&mut self) -> Result<Option<String>> {
        let mut line = String::new();
        if self.jsonl {
            while self.read_line(&mut line)? {
                if line.trim().is_empty() {
                    continue;
                }
                let v: serde_json::Value = serde_json::from_str(&line).map_err(|e| DataError::Parse {
                    path: self.path.display().to_string(),
                    line: self.line_no,
                    msg: format!("invalid JSON ({e})"),
                })?;
                return match v.get("text").and_then(|t| t.as_str()) {
                    Some(t) => Ok(Some(t.to_string())),
                    None => Err(DataError::Parse {
                        path: self.path.display().to_string(),
                        line: self.line_no,
                        msg: "no string field \"text\"; each JSONL line must be {\"text\": \"...\"}".into(),
                    }),
                };
            }
            return Ok(None);
        }
        let mut doc = String::new();
        while self.read_line(&mut line)? {
            if line.trim().is_empty() {
                if !doc.is_empty() {
                    return Ok(Some(doc));
                }
                continue;
            }
            if !doc.is_empty() {
                doc.push(' ');
            }
            doc.push_str(line.trim_end_matches(['\n', '\r']));
        }
        Ok((!doc.is_empty()).then_some(doc))
    }
}

impl Iterator for DocumentReader {
    type Item = Result<String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_doc() {
            Ok(Some(d)) => Some(Ok(d)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paragraphs_and_jsonl() {
        let dir = tempfile::tempdir().unwrap();
        let txt = dir.path().join("a.txt");
        std::fs::write(&txt, "first doc line one\nline two.\n\n\n second doc.\n").unwrap();
        let docs: Vec<String> = DocumentReader::open(&txt).unwrap().map(|d| d.unwrap()).collect();
        assert_eq!(docs, vec!["first doc line one line two.", " second doc."]);
        let jl = dir.path().join("b.jsonl");
        std::fs::write(&jl, "{\"text\": \"hello there.\"}\n\n{\"text\": \"bye.\", \"id\": 3}\n").unwrap();
        let docs: Vec<String> = DocumentReader::open(&jl).unwrap().map(|d| d.unwrap()).collect();
        assert_eq!(docs, vec!["hello there.", "bye."]);
        std::fs::write(&jl, "{\"txt\": 1}\n").unwrap();
        let err = DocumentReader::open(&jl).unwrap().next().unwrap().unwrap_err().to_string();
        assert!(err.contains(":1:") && err.contains("\"text\""), "{err}");
    }
}

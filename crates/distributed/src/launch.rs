//! The launch a rank was started in: torchrun's environment (or the same variables set by
//! hand, where rank 0 then hosts the TCPStore itself).

use crate::{DistError, Result};

/// At most this many ranks (a bound on what a bad `WORLD_SIZE` can make us allocate).
pub const MAX_WORLD_SIZE: usize = 1 << 16;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    pub rank: usize,
    pub world_size: usize,
    pub local_rank: usize,
    pub master_addr: String,
    pub master_port: u16,
    /// torchrun's agent hosts the store (`TORCHELASTIC_USE_AGENT_STORE=True`).
    pub agent_store: bool,
    /// `TORCHELASTIC_RESTART_COUNT`: a restarted worker group gets a fresh store prefix.
    pub restart_count: u64,
}

impl Launch {
    /// `None` unless `WORLD_SIZE` is set (not launched by torchrun or by hand).
    pub fn from_env() -> Result<Option<Self>> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Option<Self>> {
        let Some(world) = get("WORLD_SIZE") else {
            return Ok(None);
        };
        let num = |key: &str, value: &str| -> Result<usize> {
            value.trim().parse::<usize>().map_err(|_| {
                DistError::Launch(format!("{key}={value:?} is not a whole number; launch with torchrun, which sets it"))
            })
        };
        let world_size = num("WORLD_SIZE", &world)?;
        if world_size == 0 || world_size > MAX_WORLD_SIZE {
            return Err(DistError::Launch(format!(
                "WORLD_SIZE={world_size} is outside 1..={MAX_WORLD_SIZE}; launch with torchrun, which sets it"
            )));
        }
        let need = |key: &str| {
            get(key).ok_or_else(|| {
                DistError::Launch(format!("WORLD_SIZE is set but {key} is not; launch with torchrun, which sets both"))
            })
        };
        let rank = num("RANK", &need("RANK")?)?;
        if rank >= world_size {
            return Err(DistError::Launch(format!("RANK={rank} is not below WORLD_SIZE={world_size}")));
        }
        let local_rank = match get("LOCAL_RANK") {
            Some(v) => num("LOCAL_RANK", &v)?,
            None => rank,
        };
        let master_addr = need("MASTER_ADDR")?;
        let port = need("MASTER_PORT")?;
        let master_port = port
            .trim()
            .parse::<u16>()
            .ok()
            .filter(|&p| p > 0)
            .ok_or_else(|| DistError::Launch(format!("MASTER_PORT={port:?} is not a TCP port (1..=65535)")))?;
        let agent_store = get("TORCHELASTIC_USE_AGENT_STORE").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let restart_count = match get("TORCHELASTIC_RESTART_COUNT") {
            Some(v) => num("TORCHELASTIC_RESTART_COUNT", &v)? as u64,
            None => 0,
        };
        Ok(Some(Self { rank, world_size, local_rank, master_addr, master_port, agent_store, restart_count }))
    }

    /// The key prefix of this run's keys in the store (PyTorch's `env://` uses
    /// `/worker/attempt_N` under torchrun's agent store).
    pub fn store_prefix(&self) -> String {
        format!("/worker/attempt_{}/plandiff/", self.restart_count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn launch(vars: &[(&str, &str)]) -> Result<Option<Launch>> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Launch::from_vars(|k| map.get(k).cloned())
    }

    const TORCHRUN: &[(&str, &str)] = &[
        ("WORLD_SIZE", "2"),
        ("RANK", "1"),
        ("LOCAL_RANK", "1"),
        ("MASTER_ADDR", "127.0.0.1"),
        ("MASTER_PORT", "29500"),
        ("TORCHELASTIC_USE_AGENT_STORE", "True"),
        ("TORCHELASTIC_RESTART_COUNT", "3"),
    ];

    #[test]
    fn reads_torchrun_environment() {
        let l = launch(TORCHRUN).unwrap().unwrap();
        assert_eq!((l.rank, l.world_size, l.local_rank, l.master_port), (1, 2, 1, 29500));
        assert!(l.agent_store);
        assert_eq!(l.store_prefix(), "/worker/attempt_3/plandiff/");
        assert_eq!(launch(&[]).unwrap(), None, "no WORLD_SIZE: a single process");
    }

    #[test]
    fn bad_environments_name_the_variable() {
        for (key, value, needle) in [
            ("WORLD_SIZE", "two", "WORLD_SIZE"),
            ("WORLD_SIZE", "0", "outside"),
            ("WORLD_SIZE", "99999999", "outside"),
            ("RANK", "2", "not below"),
            ("MASTER_PORT", "70000", "MASTER_PORT"),
            ("LOCAL_RANK", "-1", "LOCAL_RANK"),
        ] {
            let vars: Vec<(&str, &str)> =
                TORCHRUN.iter().map(|&(k, v)| if k == key { (k, value) } else { (k, v) }).collect();
            let e = launch(&vars).unwrap_err().to_string();
            assert!(e.contains(needle), "{key}={value}: {e}");
            assert!(!e.contains('\n'));
        }
        let no_addr: Vec<(&str, &str)> = TORCHRUN.iter().copied().filter(|(k, _)| *k != "MASTER_ADDR").collect();
        assert!(launch(&no_addr).unwrap_err().to_string().contains("MASTER_ADDR"));
    }
}

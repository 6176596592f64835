//! How many masked tokens each step commits: LLaDA's `get_num_transfer_tokens` (generate.py):
//! `masked // steps` per step, plus one for the first `masked % steps` steps, so the count
//! falls linearly in t and every masked token is committed by the last step.

/// Tokens to commit at each of `steps` steps when `masked` are masked.
pub fn num_transfer_tokens(masked: usize, steps: usize) -> Vec<usize> {
    if steps == 0 {
        return Vec::new();
    }
    let (base, rem) = (masked / steps, masked % steps);
    (0..steps).map(|i| base + usize::from(i < rem)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows printed by LLaDA's own function (ML-GSAI/LLaDA generate.py) under PyTorch:
    /// `get_num_transfer_tokens(torch.ones(1, m, dtype=bool), s)[0].tolist()`.
    #[test]
    fn equals_lladas_get_num_transfer_tokens() {
        let table: &[(usize, usize, &[usize])] = &[
            (10, 4, &[3, 3, 2, 2]),
            (8, 8, &[1, 1, 1, 1, 1, 1, 1, 1]),
            (3, 5, &[1, 1, 1, 0, 0]),
            (32, 5, &[7, 7, 6, 6, 6]),
            (128, 64, &[2; 64]),
            (7, 1, &[7]),
            (0, 3, &[0, 0, 0]),
            (100, 7, &[15, 15, 14, 14, 14, 14, 14]),
        ];
        for &(m, s, want) in table {
            let got = num_transfer_tokens(m, s);
            assert_eq!(got, want, "masked {m}, steps {s}");
            assert_eq!(got.iter().sum::<usize>(), m);
        }
        assert!(num_transfer_tokens(5, 0).is_empty());
    }
}

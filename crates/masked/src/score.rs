//! Each token's log-probability under the model with that token masked and the rest of the
//! text in view (the pseudo-log-likelihood of Salazar et al. 2020): one row per scored
//! position, batched.

use tch::{Kind, Tensor};

/// Rows per forward pass while scoring.
const CHUNK: usize = 32;

/// `log p(ids[i] | ids with position i masked)` for each `i` in `positions`.
/// `logits_fn` maps `(B, L)` ids to `(B, L, V)` logits; `ids` is `(L,)` int64.
pub fn token_logprobs(
    ids: &Tensor,
    positions: &[usize],
    mask_id: i64,
    mut logits_fn: impl FnMut(&Tensor) -> Tensor,
) -> Result<Vec<f64>, tch::TchError> {
    let l = ids.size()[0];
    let mut out = Vec::with_capacity(positions.len());
    tch::no_grad(|| {
        for chunk in positions.chunks(CHUNK) {
            let n = chunk.len() as i64;
            let rows = ids.view([1, l]).repeat([n, 1]); // (n, L)
            let pos: Vec<i64> = chunk.iter().map(|&p| p as i64).collect();
            let pos_t = Tensor::from_slice(&pos).to_device(ids.device()).view([n, 1]);
            let logits = logits_fn(&rows.scatter_value(1, &pos_t, mask_id)); // (n, L, V)
                                                                             // Row r's own position only, then the softmax (not over all n x L positions).
            let v = logits.size()[2];
            let at = logits.gather(1, &pos_t.view([n, 1, 1]).expand([n, 1, v], false), false); // (n, 1, V)
            let logp = at.to_kind(Kind::Double).log_softmax(-1, Kind::Double);
            let tok = rows.gather(1, &pos_t, false).view([n, 1, 1]);
            out.extend(Vec::<f64>::try_from(logp.gather(2, &tok, false).view([n]).to_device(tch::Device::Cpu))?);
        }
        Ok(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn scores_each_token_with_only_it_masked() {
        // A "model" that predicts each position's token from its left neighbour (id + 1),
        // knowing nothing at a masked one: a token scores high exactly when it follows its
        // neighbour, and the scorer masks one position per row.
        let ids = Tensor::from_slice(&[1i64, 2, 3, 7, 8]);
        let mask_id = 10;
        let f = |x: &Tensor| {
            let (b, l) = x.size2().unwrap();
            let prev = Tensor::cat(&[Tensor::zeros([b, 1], (Kind::Int64, Device::Cpu)), x.narrow(1, 0, l - 1)], 1);
            let guess = (prev + 1).clamp(0, 9);
            guess.one_hot(10).to_kind(Kind::Float) * 20.0
        };
        let lp = token_logprobs(&ids, &[1, 2, 3, 4], mask_id, f).unwrap();
        assert!(lp[0] > -1e-6 && lp[1] > -1e-6 && lp[3] > -1e-6, "{lp:?}");
        assert!(lp[2] < -10.0, "7 does not follow 3: {lp:?}");
    }
}

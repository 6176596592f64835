//! Unit tests of the masked edit's pure helpers.

use super::pick_weakest;

#[test]
fn weakest_tokens_by_threshold_or_fraction() {
    let s = [(1, -0.5), (2, -4.0), (3, -1.0), (4, -9.0)];
    assert_eq!(pick_weakest(&s, Some(-2.0), None), vec![2, 4]);
    assert_eq!(pick_weakest(&s, Some(-10.0), None), Vec::<usize>::new());
    assert_eq!(pick_weakest(&s, None, Some(0.5)), vec![2, 4]);
    assert_eq!(pick_weakest(&s, None, Some(0.01)), vec![4], "at least one");
    assert_eq!(pick_weakest(&s, None, Some(1.0)), vec![1, 2, 3, 4]);
}

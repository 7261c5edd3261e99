// Tests run one at a time: torch work in this project runs on one thread at a time, as in the CLI and in the silo's
// torch worker, and the TorchSharp Scalar issue described in docs/operations.md ("Environment notes") is not invited by test
// threads allocating beside each other's native calls.
[assembly: CollectionBehavior(DisableTestParallelization = true)]

// One at a time: the load run is the machine's whole work while it measures latency.
[assembly: CollectionBehavior(DisableTestParallelization = true)]

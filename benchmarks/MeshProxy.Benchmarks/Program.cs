// The sidecar's own top-level Program is visible here (InternalsVisibleTo), so this assembly is named by a type of its own.
BenchmarkDotNet.Running.BenchmarkSwitcher.FromAssembly(typeof(MeshProxy.Benchmarks.Telemetry.MetricsRecordingBenchmarks).Assembly).Run(args);

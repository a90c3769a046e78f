using MeshProxy.Fuzz;
using SharpFuzz;

// Under afl-fuzz (run.sh): `MeshProxy.Fuzz TARGET` serves afl's inputs to the target, each in a
// child process that SharpFuzz restarts when it dies, so a stack overflow is a crash afl records
// rather than the end of the fuzzer. Outside afl: `MeshProxy.Fuzz TARGET FILE...` runs the target on
// each file and prints what happened (how run.sh shows a crashing input), and `--list` names the targets.
if (args is ["--list"])
{
    foreach (var name in FuzzTargets.All.Keys)
    {
        Console.WriteLine(name);
    }

    return 0;
}

if (args.Length == 0 || !FuzzTargets.All.TryGetValue(args[0], out var target))
{
    Console.Error.WriteLine($"usage: MeshProxy.Fuzz TARGET [FILE...] | --list; targets: {string.Join(", ", FuzzTargets.All.Keys)}");
    return 2;
}

if (args.Length > 1)
{
    return Replay.Run(args[0], target, args[1..]);
}

var buffer = new MemoryStream();
Fuzzer.OutOfProcess.Run(stream =>
{
    buffer.SetLength(0);
    stream.CopyTo(buffer);
    target(buffer.GetBuffer().AsSpan(0, (int)buffer.Length));
});
return 0;

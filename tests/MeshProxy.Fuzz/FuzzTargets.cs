namespace MeshProxy.Fuzz;

/// <summary>One parser of untrusted input, fed the fuzzer's bytes. It returns for every outcome the parser documents and throws for anything else.</summary>
internal delegate void FuzzTarget(ReadOnlySpan<byte> input);

/// <summary>
/// A property of a parser's output that does not hold: a finding as much as an unexpected exception is.
/// Thrown by the targets' checks, so afl-fuzz records the input as a crash.
/// </summary>
internal sealed class FuzzFinding(string message) : Exception(message);

internal static class FuzzTargets
{
    /// <summary>Target names as run.sh and the corpus folders (corpus/NAME) spell them.</summary>
    public static readonly IReadOnlyDictionary<string, FuzzTarget> All = new SortedDictionary<string, FuzzTarget>(StringComparer.Ordinal)
    {
        ["path"] = PathNormalizationTarget.Run,
        ["clienthello"] = ClientHelloTarget.Run,
        ["inbound"] = InboundDetectionTarget.Run,
        ["yaml"] = YamlResourcesTarget.Run,
        ["origdst"] = OriginalDestinationTarget.Run,
        ["jwt"] = JwtTokenTarget.Run,
        ["response"] = ResponseHeadTarget.Run,
        ["preamble"] = PeerPreambleTarget.Run,
    };

    public static void Check(bool condition, string what)
    {
        if (!condition)
        {
            throw new FuzzFinding(what);
        }
    }
}

using System.Buffers;
using MeshProxy.Sidecar.Egress;

namespace MeshProxy.Fuzz;

/// <summary>
/// The egress listener's SNI reader, over bytes as a socket delivers them. Beyond "no exception": the
/// answer does not depend on how the bytes are cut into segments; bytes after a complete or refused
/// ClientHello do not change the answer; a server name is a lowercase DNS name.
/// </summary>
internal static class ClientHelloTarget
{
    private static readonly byte[] Trailer = [0x17, 0x03, 0x03, 0x00, 0x10, 0xAA];

    public static void Run(ReadOnlySpan<byte> input)
    {
        var bytes = input.ToArray();
        var status = ClientHelloParser.TryParse(new ReadOnlySequence<byte>(bytes), out var name);
        CheckName(status, name);

        // Cut into uneven pieces: one byte, then a third, then the rest.
        var first = Math.Min(1, bytes.Length);
        var second = first + ((bytes.Length - first) / 3);
        var split = ClientHelloParser.TryParse(Segments.Of(bytes[..first], bytes[first..second], bytes[second..]), out var splitName);
        FuzzTargets.Check(split == status && splitName == name, $"segments change the answer: {status} '{name}' whole, {split} '{splitName}' in pieces");

        if (status != ClientHelloStatus.NeedMore)
        {
            var longer = ClientHelloParser.TryParse(Segments.Of(bytes, Trailer), out var longerName);
            FuzzTargets.Check(longer == status && longerName == name, $"later bytes change the answer: {status} '{name}', then {longer} '{longerName}'");
        }
    }

    private static void CheckName(ClientHelloStatus status, string? name)
    {
        if (name is null)
        {
            return;
        }

        FuzzTargets.Check(status == ClientHelloStatus.Complete, $"a name ('{name}') with status {status}");
        FuzzTargets.Check(name.Length is > 0 and <= 253 && name[0] != '.' && name[^1] != '.', $"'{name}' is not a DNS name");
        FuzzTargets.Check(name.All(c => c is (>= 'a' and <= 'z') or (>= '0' and <= '9') or '-' or '.' or '_'), $"'{name}' has a character outside a lowercase DNS name");
    }
}

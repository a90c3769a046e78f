using System.Globalization;
using System.Net;

namespace MeshProxy.Config.Parsing;

/// <summary>
/// IP blocks as Istio writes them: "10.1.2.3" (one address) or "10.0.0.0/8". Host bits under the prefix
/// are cleared rather than refused ("10.1.2.3/16" means 10.1.0.0/16), as Envoy's CIDR ranges do;
/// System.Net.IPNetwork.Parse would refuse them.
/// </summary>
public static class Cidrs
{
    public static bool TryParse(string text, out IPNetwork network)
    {
        network = default;
        var span = text.AsSpan().Trim();
        var slash = span.IndexOf('/');
        var addressText = slash < 0 ? span : span[..slash];
        // A zone (fe80::1%eth0) names an interface, which means nothing to a peer's address.
        // IPAddress.TryParse also takes inet_aton's shorthands ("10.0.0" is 10.0.0.0, "10" is 0.0.0.10),
        // which nobody writing a policy means; IPv4 must be four dotted numbers.
        if (addressText.Contains('%') || (!addressText.Contains(':') && addressText.Count('.') != 3) ||
            !IPAddress.TryParse(addressText, out var address))
        {
            return false;
        }

        var bits = address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork ? 32 : 128;
        var prefix = bits;
        if (slash >= 0 &&
            (!int.TryParse(span[(slash + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out prefix) || prefix > bits))
        {
            return false;
        }

        Span<byte> bytes = stackalloc byte[16];
        address.TryWriteBytes(bytes, out var length);
        bytes = bytes[..length];
        for (var i = 0; i < length; i++)
        {
            var keep = Math.Clamp(prefix - (i * 8), 0, 8);
            bytes[i] &= (byte)(0xFF << (8 - keep));
        }

        network = new IPNetwork(new IPAddress(bytes), prefix);
        return true;
    }
}

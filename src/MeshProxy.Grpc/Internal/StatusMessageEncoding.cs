using System.Text;

namespace MeshProxy.Grpc.Internal;

/// <summary>
/// grpc-message percent-encoding (PROTOCOL-HTTP2.md, Status-Message): the UTF-8 bytes of the message,
/// with every byte outside 0x20-0x7E, and '%' itself, written as %XX.
/// </summary>
internal static class StatusMessageEncoding
{
    public static string Encode(string message)
    {
        if (!NeedsEncoding(message))
        {
            return message;
        }

        var bytes = Encoding.UTF8.GetBytes(message);
        var builder = new StringBuilder(bytes.Length * 3);
        foreach (var b in bytes)
        {
            if (IsUnreserved(b))
            {
                builder.Append((char)b);
            }
            else
            {
                builder.Append('%').Append(HexDigit(b >> 4)).Append(HexDigit(b & 0xF));
            }
        }

        return builder.ToString();
    }

    /// <summary>
    /// Decodes valid %XX escapes. The spec forbids failing on a bad value: a broken escape is kept
    /// as it was, and bytes that are not valid UTF-8 become U+FFFD.
    /// </summary>
    public static string Decode(string value)
    {
        if (!value.Contains('%', StringComparison.Ordinal))
        {
            return value;
        }

        var bytes = new List<byte>(value.Length);
        var runStart = 0;
        for (var i = 0; i < value.Length; i++)
        {
            if (value[i] != '%' || i + 2 >= value.Length)
            {
                continue;
            }

            var high = HexValue(value[i + 1]);
            var low = HexValue(value[i + 2]);
            if (high < 0 || low < 0)
            {
                continue;
            }

            bytes.AddRange(Encoding.UTF8.GetBytes(value[runStart..i]));
            bytes.Add((byte)((high << 4) | low));
            i += 2;
            runStart = i + 1;
        }

        bytes.AddRange(Encoding.UTF8.GetBytes(value[runStart..]));
        return Encoding.UTF8.GetString(bytes.ToArray());
    }

    private static bool NeedsEncoding(string message)
    {
        foreach (var c in message)
        {
            if (c > 0x7E || !IsUnreserved((byte)c))
            {
                return true;
            }
        }

        return false;
    }

    private static bool IsUnreserved(byte b) => b is >= 0x20 and <= 0x7E and not (byte)'%';

    private static char HexDigit(int value) => (char)(value < 10 ? '0' + value : 'A' + value - 10);

    private static int HexValue(char c) => c switch
    {
        >= '0' and <= '9' => c - '0',
        >= 'A' and <= 'F' => c - 'A' + 10,
        >= 'a' and <= 'f' => c - 'a' + 10,
        _ => -1,
    };
}

using System.Buffers;
using System.Globalization;
using System.Text;

namespace MeshProxy.Metrics.Internal;

/// <summary>
/// Writes the Prometheus text format 0.0.4 straight into an <see cref="IBufferWriter{T}"/>, so a scrape
/// never builds the exposition as one string. Names, HELP/TYPE lines and label blocks are encoded once
/// when a family or series is created; a scrape copies those bytes and formats the numbers.
/// </summary>
internal sealed class ExpositionWriter(IBufferWriter<byte> output)
{
    private static readonly UTF8Encoding Utf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: false);

    public void Write(ReadOnlySpan<byte> bytes) => output.Write(bytes);

    public void Write(byte b)
    {
        var span = output.GetSpan(1);
        span[0] = b;
        output.Advance(1);
    }

    public void WriteLong(long value)
    {
        var span = output.GetSpan(20);
        if (!value.TryFormat(span, out var written, default, CultureInfo.InvariantCulture))
        {
            throw new InvalidOperationException("A long did not fit in 20 bytes.");
        }

        output.Advance(written);
    }

    /// <summary>Go's strconv.ParseFloat reads what this writes: NaN, +Inf, -Inf, or the shortest round-trip form.</summary>
    public void WriteDouble(double value) => output.Advance(FormatDouble(value, output.GetSpan(32)));

    public static int FormatDouble(double value, Span<byte> destination)
    {
        if (double.IsNaN(value))
        {
            return Copy("NaN"u8, destination);
        }

        if (double.IsPositiveInfinity(value))
        {
            return Copy("+Inf"u8, destination);
        }

        if (double.IsNegativeInfinity(value))
        {
            return Copy("-Inf"u8, destination);
        }

        if (!value.TryFormat(destination, out var written, "R", CultureInfo.InvariantCulture))
        {
            throw new InvalidOperationException("A double did not fit in 32 bytes.");
        }

        return written;
    }

    public static string FormatDouble(double value)
    {
        Span<byte> buffer = stackalloc byte[32];
        var length = FormatDouble(value, buffer);
        return Encoding.ASCII.GetString(buffer[..length]);
    }

    /// <summary>The HELP and TYPE lines of a family; HELP text escapes backslash and newline.</summary>
    public static byte[] EncodeHeader(string name, string help, string type)
    {
        var builder = new StringBuilder();
        builder.Append("# HELP ").Append(name).Append(' ');
        foreach (var c in help)
        {
            _ = c switch
            {
                '\\' => builder.Append(@"\\"),
                '\n' => builder.Append(@"\n"),
                _ => builder.Append(c),
            };
        }

        builder.Append('\n').Append("# TYPE ").Append(name).Append(' ').Append(type).Append('\n');
        return Utf8.GetBytes(builder.ToString());
    }

    /// <summary>
    /// <c>name1="value1",name2="value2"</c> without braces, so that a histogram can append its <c>le</c>.
    /// Label values escape backslash, double quote and newline.
    /// </summary>
    public static byte[] EncodeLabelBlock(IReadOnlyList<string> names, IReadOnlyList<string> values)
    {
        var builder = new StringBuilder();
        for (var i = 0; i < names.Count; i++)
        {
            if (i > 0)
            {
                builder.Append(',');
            }

            builder.Append(names[i]).Append("=\"");
            AppendEscapedLabelValue(builder, values[i]);
            builder.Append('"');
        }

        return Utf8.GetBytes(builder.ToString());
    }

    public static void AppendEscapedLabelValue(StringBuilder builder, string value)
    {
        foreach (var c in value)
        {
            _ = c switch
            {
                '\\' => builder.Append(@"\\"),
                '"' => builder.Append("\\\""),
                '\n' => builder.Append(@"\n"),
                _ => builder.Append(c),
            };
        }
    }

    public static byte[] Ascii(string text) => Encoding.ASCII.GetBytes(text);

    private static int Copy(ReadOnlySpan<byte> text, Span<byte> destination)
    {
        text.CopyTo(destination);
        return text.Length;
    }
}

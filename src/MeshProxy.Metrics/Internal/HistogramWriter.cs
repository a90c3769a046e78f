namespace MeshProxy.Metrics.Internal;

/// <summary>Pre-encoded names of a histogram family's samples and its <c>le</c> label values.</summary>
internal readonly struct HistogramNames
{
    public HistogramNames(string name, double[] bounds)
    {
        Bucket = ExpositionWriter.Ascii(name + "_bucket{");
        Sum = ExpositionWriter.Ascii(name + "_sum");
        Count = ExpositionWriter.Ascii(name + "_count");
        Le = new byte[bounds.Length + 1][];
        for (var i = 0; i < bounds.Length; i++)
        {
            Le[i] = ExpositionWriter.Ascii("le=\"" + ExpositionWriter.FormatDouble(bounds[i]) + "\"} ");
        }

        Le[bounds.Length] = ExpositionWriter.Ascii("le=\"+Inf\"} ");
    }

    public byte[] Bucket { get; }

    public byte[] Sum { get; }

    public byte[] Count { get; }

    /// <summary><c>le="bound"} </c> for each bucket, +Inf last.</summary>
    public byte[][] Le { get; }
}

internal static class HistogramWriter
{
    /// <summary>Writes the cumulative buckets, the sum and the count of one histogram series.</summary>
    public static void Write(ExpositionWriter writer, in HistogramNames names, byte[] labelBlock, long[] cells, int stride, int offset, int boundCount)
    {
        long cumulative = 0;
        for (var b = 0; b <= boundCount; b++)
        {
            cumulative += Stripes.Sum(cells, stride, offset + b);
            writer.Write(names.Bucket);
            if (labelBlock.Length > 0)
            {
                writer.Write(labelBlock);
                writer.Write((byte)',');
            }

            writer.Write(names.Le[b]);
            writer.WriteLong(cumulative);
            writer.Write((byte)'\n');
        }

        writer.Write(names.Sum);
        WriteLabels(writer, labelBlock);
        writer.WriteDouble(Stripes.SumDouble(cells, stride, offset + boundCount + 1));
        writer.Write((byte)'\n');

        writer.Write(names.Count);
        WriteLabels(writer, labelBlock);
        writer.WriteLong(cumulative);
        writer.Write((byte)'\n');
    }

    /// <summary><c>{labels} </c>, or just the space when there are none.</summary>
    public static void WriteLabels(ExpositionWriter writer, byte[] labelBlock)
    {
        if (labelBlock.Length > 0)
        {
            writer.Write((byte)'{');
            writer.Write(labelBlock);
            writer.Write((byte)'}');
        }

        writer.Write((byte)' ');
    }
}

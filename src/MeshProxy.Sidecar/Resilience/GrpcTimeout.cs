using System.Globalization;

namespace MeshProxy.Sidecar.Resilience;

/// <summary>
/// The grpc-timeout header (PROTOCOL-HTTP2.md): up to 8 ASCII digits and a unit, H M S m u n. Parsed
/// to bound the request, and written anew on every attempt with the time that is left.
/// </summary>
internal static class GrpcTimeout
{
    public const string HeaderName = "grpc-timeout";

    public static bool TryParse(ReadOnlySpan<char> value, out TimeSpan timeout)
    {
        timeout = default;
        if (value.Length is < 2 or > 9 || !long.TryParse(value[..^1], NumberStyles.None, CultureInfo.InvariantCulture, out var n))
        {
            return false;
        }

        double? ms = value[^1] switch
        {
            'H' => n * 3_600_000.0,
            'M' => n * 60_000.0,
            'S' => n * 1_000.0,
            'm' => n,
            'u' => n / 1_000.0,
            'n' => n / 1_000_000.0,
            _ => null,
        };
        if (ms is null)
        {
            return false;
        }

        timeout = TimeSpan.FromMilliseconds(Math.Min(ms.Value, TimeSpan.MaxValue.TotalMilliseconds / 2));
        return true;
    }

    /// <summary>Milliseconds, rounded up so that a positive remainder never reads as zero; seconds when that does not fit 8 digits.</summary>
    public static string Format(TimeSpan remaining)
    {
        var ms = (long)Math.Ceiling(Math.Max(remaining.TotalMilliseconds, 1));
        return ms <= 99_999_999
            ? ms.ToString(CultureInfo.InvariantCulture) + "m"
            : Math.Min((long)Math.Ceiling(remaining.TotalSeconds), 99_999_999).ToString(CultureInfo.InvariantCulture) + "S";
    }
}

using System.Globalization;

namespace MeshProxy.Grpc.Internal;

/// <summary>grpc-timeout: at most 8 ASCII digits followed by one unit letter (H M S m u n).</summary>
internal static class GrpcTimeout
{
    private const int MaxDigits = 8;
    private const long MaxValue = 99_999_999;

    public static bool TryParse(string? text, out TimeSpan timeout)
    {
        timeout = default;
        if (text is null || text.Length < 2 || text.Length > MaxDigits + 1)
        {
            return false;
        }

        var digits = text.AsSpan(0, text.Length - 1);
        foreach (var c in digits)
        {
            if (c is < '0' or > '9')
            {
                return false;
            }
        }

        var value = long.Parse(digits, NumberStyles.None, CultureInfo.InvariantCulture);
        long? ticks = text[^1] switch
        {
            'H' => value * TimeSpan.TicksPerHour,
            'M' => value * TimeSpan.TicksPerMinute,
            'S' => value * TimeSpan.TicksPerSecond,
            'm' => value * TimeSpan.TicksPerMillisecond,
            'u' => value * TimeSpan.TicksPerMicrosecond,
            // A tick is 100 ns; round up so that a non-zero timeout never becomes zero.
            'n' => (value + 99) / 100,
            _ => null,
        };
        if (ticks is null)
        {
            return false;
        }

        timeout = TimeSpan.FromTicks(ticks.Value);
        return true;
    }

    /// <summary>Formats with the finest unit that fits in 8 digits, rounding up (never shortening the deadline).</summary>
    public static string Format(TimeSpan timeout)
    {
        var ticks = Math.Max(timeout.Ticks, 1);
        if (ticks < TimeSpan.TicksPerMillisecond)
        {
            return Unit(CeilingDivide(ticks, TimeSpan.TicksPerMicrosecond), 'u');
        }

        foreach (var (unitTicks, unit) in Units)
        {
            var value = CeilingDivide(ticks, unitTicks);
            if (value <= MaxValue)
            {
                return Unit(value, unit);
            }
        }

        return Unit(MaxValue, 'H');
    }

    private static readonly (long Ticks, char Unit)[] Units =
    [
        (TimeSpan.TicksPerMillisecond, 'm'),
        (TimeSpan.TicksPerSecond, 'S'),
        (TimeSpan.TicksPerMinute, 'M'),
        (TimeSpan.TicksPerHour, 'H'),
    ];

    private static long CeilingDivide(long value, long divisor) => (value + divisor - 1) / divisor;

    private static string Unit(long value, char unit) => value.ToString(CultureInfo.InvariantCulture) + unit;
}

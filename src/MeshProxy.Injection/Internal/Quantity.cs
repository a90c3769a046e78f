using System.Globalization;
using System.Text.RegularExpressions;

namespace MeshProxy.Injection.Internal;

/// <summary>Kubernetes resource quantities ("256Mi", "1.5G", "100m", "1e3"), enough to validate and size.</summary>
internal static partial class Quantity
{
    public static bool TryParse(string text, out decimal value)
    {
        value = 0;
        var match = Pattern().Match(text.Trim());
        if (!match.Success || !decimal.TryParse(match.Groups[1].Value, NumberStyles.AllowDecimalPoint | NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var number))
        {
            return false;
        }

        var suffix = match.Groups[2].Value;
        decimal multiplier;
        if (suffix.StartsWith('e') || suffix.StartsWith('E'))
        {
            if (!int.TryParse(suffix[1..], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var exponent) || exponent is < -9 or > 18)
            {
                return false;
            }

            multiplier = (decimal)Math.Pow(10, exponent);
        }
        else
        {
            multiplier = suffix switch
            {
                "" => 1m,
                "n" => 0.000000001m,
                "u" => 0.000001m,
                "m" => 0.001m,
                "k" => 1e3m,
                "M" => 1e6m,
                "G" => 1e9m,
                "T" => 1e12m,
                "P" => 1e15m,
                "E" => 1e18m,
                "Ki" => 1024m,
                "Mi" => 1024m * 1024,
                "Gi" => 1024m * 1024 * 1024,
                "Ti" => 1024m * 1024 * 1024 * 1024,
                "Pi" => 1024m * 1024 * 1024 * 1024 * 1024,
                "Ei" => 1024m * 1024 * 1024 * 1024 * 1024 * 1024,
                _ => 0m,
            };
        }

        value = number * multiplier;
        return value >= 0;
    }

    [GeneratedRegex(@"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))((?:[eE][+-]?[0-9]+)|n|u|m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")]
    private static partial Regex Pattern();
}

using System.Text;

namespace MeshProxy.Fuzz;

/// <summary>Runs a target on saved inputs (a crash afl found, a corpus file) and says what each did, input included.</summary>
internal static class Replay
{
    public static int Run(string name, FuzzTarget target, IEnumerable<string> files)
    {
        var failed = 0;
        foreach (var file in files)
        {
            var input = File.ReadAllBytes(file);
            try
            {
                target(input);
                Console.WriteLine($"{name} {file}: ok");
            }
            catch (Exception ex)
            {
                failed++;
                Console.WriteLine($"{name} {file}: {ex.GetType().FullName}: {ex.Message}");
                Console.WriteLine($"input ({input.Length} bytes) as a C# string: \"{Escape(input)}\"");
                Console.WriteLine($"input as hex: {Convert.ToHexString(input)}");
                Console.WriteLine(ex.StackTrace);
            }
        }

        return failed == 0 ? 0 : 1;
    }

    private static string Escape(byte[] input)
    {
        var text = new StringBuilder(input.Length);
        foreach (var b in input)
        {
            text.Append(b switch
            {
                (byte)'"' => "\\\"",
                (byte)'\\' => "\\\\",
                (byte)'\n' => "\\n",
                (byte)'\r' => "\\r",
                (byte)'\t' => "\\t",
                >= 0x20 and < 0x7F => ((char)b).ToString(),
                _ => $"\\u{b:X4}", // not \x, which reads up to four hex digits
            });
        }

        return text.ToString();
    }
}

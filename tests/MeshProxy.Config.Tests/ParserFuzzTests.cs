using System.Diagnostics;
using System.Text;
using MeshProxy.Config.Parsing;

namespace MeshProxy.Config.Tests;

/// <summary>
/// Mutated copies of the repository's real resource files (samples/, copied beside the tests as the
/// corpus) fed to every parser of untrusted YAML: each must come back as resources or as diagnostics
/// naming the file, never as an exception. Seeds are fixed, so a failure names the case that reproduces it.
/// </summary>
public sealed class ParserFuzzTests
{
    private const int Cases = 5000;

    // YAML's indicators, and short runs of them that steer the scanner into its rarer states
    // (flow collections left open, anchors and aliases, tags, block scalars, merge keys).
    private static readonly string[] Insertions =
    [
        "{", "}", "[", "]", ":", "-", ",", "&", "*", "!", "|", ">", "?", "#", "%", "@", "`", "\"", "'", "\\", "\n", "\t", " ",
        "{ ", ": ", "\n- ", "- ", "&a ", "*a", "*a\n", "!!str ", "!!map ", "!x ", "|\n", ">-\n", "? ", "<<: *a\n", "---\n", "...\n",
        "%YAML 1.2\n", "\"\\u", "'", "{ b: c\n", "[a, ", "\n  : ", "\ufeff", "\0", "&a [*a]", "&a { k: *a }",
    ];

    [Fact]
    public void Mutated_resource_files_give_a_diagnostic_or_a_result_never_an_exception()
    {
        var corpus = Corpus();
        var failures = new List<string>();
        var slowest = (Seed: -1, Time: TimeSpan.Zero);
        for (var seed = 0; seed < Cases; seed++)
        {
            var clock = Stopwatch.StartNew();
            var random = new Random(seed);
            var (name, original) = corpus[random.Next(corpus.Count)];
            var text = Mutate(original, random);
            try
            {
                Check(ResourceParser.ParseText(text, name), name);
                var overrideResult = SidecarOverrideParser.Parse(text, "override");
                Assert.True(overrideResult.Override is not null || overrideResult.Errors.Count > 0);
            }
            catch (Exception ex) when (failures.Count < 5)
            {
                failures.Add($"seed {seed} ({name}): {ex.GetType().Name}: {ex.Message}\n--- input ---\n{text}\n---");
            }
            catch (Exception)
            {
                failures.Add($"seed {seed}");
            }

            if (clock.Elapsed > slowest.Time)
            {
                slowest = (seed, clock.Elapsed);
            }
        }

        Assert.True(failures.Count == 0, $"{failures.Count} of {Cases} mutated documents threw:\n{string.Join("\n", failures)}");
        // A document that makes a parser go quadratic or worse (alias expansion, backtracking) takes
        // seconds where the others take microseconds; a bound per case finds it by seed, and no load
        // on the machine (a whole run took 68 s at load 80) comes near it.
        Assert.True(slowest.Time < TimeSpan.FromSeconds(10), $"seed {slowest.Seed} took {slowest.Time}");
    }

    [Theory]
    [InlineData("a: { b: c\nd:\n")] // the fault-injection run's input: the scanner's InvalidOperationException
    [InlineData("apiVersion: meshproxy.io/v1alpha1\nkind: Service\nmetadata: { name: b }\nspec: { ports: [{ port: 80 }\n")]
    [InlineData("a: &a [*a]\n")]
    [InlineData("a: *nowhere\n")]
    [InlineData("a: 1\na: 2\n")]
    public void Known_hostile_inputs_are_diagnostics(string text)
    {
        var result = ResourceParser.ParseText(text, "x.yaml");
        Assert.NotEmpty(result.Errors);
        Assert.All(result.Errors, e => Assert.Matches(@"^x\.yaml:[1-9]\d*: ", e.ToString()));
    }

    [Theory]
    [InlineData(100_000)] // the representation model recurses per level: without a bound this overflows the stack
    [InlineData(101)]
    public void Nesting_beyond_the_bound_is_a_diagnostic_not_a_stack_overflow(int depth)
    {
        var text = "spec: " + new string('[', depth) + new string(']', depth) + "\n";
        var error = Assert.Single(ResourceParser.ParseText(text, "deep.yaml").Errors);
        Assert.Contains("nested deeper than", error.Reason, StringComparison.Ordinal);
        Assert.Single(SidecarOverrideParser.Parse(text, "deep").Errors);
    }

    [Fact]
    public void Aliases_that_would_expand_exponentially_are_refused()
    {
        // Each level holds ten aliases of the one before: 10^9 nodes once expanded, a few hundred bytes written.
        var text = new StringBuilder("l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n");
        for (var i = 1; i <= 9; i++)
        {
            text.Append($"l{i}: &l{i} [{string.Join(", ", Enumerable.Repeat($"*l{i - 1}", 10))}]\n");
        }

        var error = Assert.Single(ResourceParser.ParseText(text.ToString(), "laughs.yaml").Errors);
        Assert.Contains("aliases", error.Reason, StringComparison.Ordinal);
    }

    /// <summary>A result (possibly empty: a mutation can leave only comments) whose every diagnostic names the file and a reason.</summary>
    private static void Check(ParseResult result, string name)
    {
        foreach (var error in result.Errors)
        {
            Assert.Equal(name, error.File);
            Assert.True(error.Line >= 0);
            Assert.False(string.IsNullOrWhiteSpace(error.Reason));
        }
    }

    private static List<(string Name, string Text)> Corpus()
    {
        var dir = Path.Combine(AppContext.BaseDirectory, "corpus");
        var files = Directory.EnumerateFiles(dir, "*.yaml", SearchOption.AllDirectories).Order(StringComparer.Ordinal).ToList();
        Assert.True(files.Count >= 5, $"the fuzz corpus in {dir} is missing");
        return files.Select(f => (Path.GetRelativePath(dir, f), File.ReadAllText(f))).ToList();
    }

    /// <summary>One to four edits: byte flips, truncation, inserted YAML punctuation, deleted or repeated lines, changed indentation.</summary>
    private static string Mutate(string text, Random random)
    {
        var bytes = new List<byte>(Encoding.UTF8.GetBytes(text));
        var edits = random.Next(1, 5);
        for (var e = 0; e < edits && bytes.Count > 0; e++)
        {
            var at = random.Next(bytes.Count);
            switch (random.Next(7))
            {
                case 0:
                    bytes[at] ^= (byte)(1 << random.Next(8));
                    break;
                case 1:
                    bytes.RemoveRange(at, bytes.Count - at);
                    break;
                case 2:
                case 3:
                    bytes.InsertRange(at, Encoding.UTF8.GetBytes(Insertions[random.Next(Insertions.Length)]));
                    break;
                case 4:
                    bytes.RemoveRange(at, Math.Min(random.Next(1, 40), bytes.Count - at));
                    break;
                case 5:
                    var lineStart = bytes.LastIndexOf((byte)'\n', at) + 1;
                    bytes.InsertRange(lineStart, Enumerable.Repeat((byte)' ', random.Next(1, 4)));
                    break;
                default:
                    var start = bytes.LastIndexOf((byte)'\n', at) + 1;
                    var end = bytes.IndexOf((byte)'\n', at);
                    var line = bytes.GetRange(start, (end < 0 ? bytes.Count : end + 1) - start);
                    bytes.InsertRange(start, line);
                    break;
            }
        }

        // Invalid UTF-8 becomes U+FFFD, as File.ReadAllText and Encoding.UTF8.GetString do for the real readers.
        return Encoding.UTF8.GetString(bytes.ToArray());
    }
}

using MeshProxy.Grpc.Internal;

namespace MeshProxy.Grpc.Tests;

public sealed class ProtocolTextTests
{
    [Theory]
    [InlineData("plain ascii stays", "plain ascii stays")]
    [InlineData("100%", "100%25")]
    [InlineData("über", "%C3%BCber")]
    [InlineData("line\nbreak", "line%0Abreak")]
    [InlineData("日本", "%E6%97%A5%E6%9C%AC")]
    public void Status_message_is_percent_encoded(string message, string wire)
    {
        Assert.Equal(wire, StatusMessageEncoding.Encode(message));
        Assert.Equal(message, StatusMessageEncoding.Decode(wire));
    }

    [Theory]
    [InlineData("100%", "100%")]
    [InlineData("%zz ok", "%zz ok")]
    [InlineData("%4", "%4")]
    [InlineData("%41%", "A%")]
    [InlineData("%c3%bc", "ü")]
    [InlineData("%FF", "\uFFFD")]
    public void Broken_encodings_decode_without_throwing(string wire, string expected) =>
        Assert.Equal(expected, StatusMessageEncoding.Decode(wire));

    [Theory]
    [InlineData("1H", 3_600_000_000.0)]
    [InlineData("2M", 120_000_000.0)]
    [InlineData("3S", 3_000_000.0)]
    [InlineData("250m", 250_000.0)]
    [InlineData("1500u", 1_500.0)]
    [InlineData("1000n", 1.0)]
    [InlineData("99999999m", 99_999_999_000.0)]
    [InlineData("0m", 0.0)]
    public void Timeout_units_parse(string text, double microseconds)
    {
        Assert.True(GrpcTimeout.TryParse(text, out var timeout));
        Assert.Equal(microseconds, timeout.TotalMicroseconds);
    }

    [Theory]
    [InlineData("")]
    [InlineData("m")]
    [InlineData("10")]
    [InlineData("10x")]
    [InlineData("-1S")]
    [InlineData("123456789m")]
    [InlineData("1.5S")]
    [InlineData(" 1S")]
    public void Malformed_timeouts_are_refused(string text) => Assert.False(GrpcTimeout.TryParse(text, out _));

    [Fact]
    public void Timeout_format_round_trips_and_never_shortens()
    {
        foreach (var timeout in new[]
        {
            TimeSpan.FromTicks(1), TimeSpan.FromMilliseconds(250), TimeSpan.FromMilliseconds(250.5),
            TimeSpan.FromDays(2), TimeSpan.FromDays(5000), TimeSpan.FromDays(300_000),
        })
        {
            var text = GrpcTimeout.Format(timeout);
            Assert.InRange(text.Length, 2, 9);
            Assert.True(GrpcTimeout.TryParse(text, out var parsed), text);
            Assert.True(parsed >= timeout, $"{text} < {timeout}");
        }
    }

    [Theory]
    [InlineData("application/grpc", true)]
    [InlineData("application/grpc+proto", true)]
    [InlineData("Application/GRPC; charset=utf-8", true)]
    [InlineData("application/grpc+json", false)]
    [InlineData("application/grpc-web", false)]
    [InlineData("text/plain", false)]
    [InlineData(null, false)]
    public void Content_types(string? contentType, bool accepted) =>
        Assert.Equal(accepted, GrpcProtocol.IsProtobufGrpcContentType(contentType));
}

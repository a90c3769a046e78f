using System.Formats.Asn1;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace MeshProxy.Identity.Internal;

/// <summary>
/// Reads the GeneralNames of a subjectAltName extension. The BCL enumerates DNS names and IP addresses but
/// not URIs, and a SPIFFE check must see every name, of every kind, to refuse extras.
/// </summary>
internal static class SubjectAltNames
{
    public const string Oid = "2.5.29.17";

    private static readonly Asn1Tag UriTag = new(TagClass.ContextSpecific, 6);

    /// <summary>The URI names and how many names of any other kind the extension holds.</summary>
    public readonly record struct Names(IReadOnlyList<string> Uris, int OtherCount);

    public static X509Extension? Find(IEnumerable<X509Extension> extensions)
    {
        foreach (var extension in extensions)
        {
            if (extension.Oid?.Value == Oid)
            {
                return extension;
            }
        }

        return null;
    }

    /// <exception cref="CryptographicException">The extension is not valid DER.</exception>
    public static Names Read(ReadOnlyMemory<byte> rawData)
    {
        try
        {
            var reader = new AsnReader(rawData, AsnEncodingRules.DER);
            var sequence = reader.ReadSequence();
            reader.ThrowIfNotEmpty();
            List<string>? uris = null;
            var other = 0;
            while (sequence.HasData)
            {
                var tag = sequence.PeekTag();
                if (tag.HasSameClassAndValue(UriTag))
                {
                    (uris ??= []).Add(sequence.ReadCharacterString(UniversalTagNumber.IA5String, UriTag));
                }
                else
                {
                    sequence.ReadEncodedValue();
                    other++;
                }
            }

            return new Names(uris ?? (IReadOnlyList<string>)[], other);
        }
        catch (AsnContentException ex)
        {
            throw new CryptographicException("the subjectAltName extension is malformed", ex);
        }
    }

    public static X509Extension BuildUri(string uri, bool critical)
    {
        var builder = new SubjectAlternativeNameBuilder();
        builder.AddUri(new Uri(uri, UriKind.Absolute));
        var built = builder.Build(critical);
        return built;
    }
}

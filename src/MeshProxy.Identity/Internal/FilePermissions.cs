namespace MeshProxy.Identity.Internal;

/// <summary>Owner-only files for secrets: created 0600 from the first byte, and checked on load.</summary>
internal static class FilePermissions
{
    public const UnixFileMode OwnerOnly = UnixFileMode.UserRead | UnixFileMode.UserWrite;

    private const UnixFileMode GroupOrOther =
        UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.GroupExecute |
        UnixFileMode.OtherRead | UnixFileMode.OtherWrite | UnixFileMode.OtherExecute;

    /// <summary>
    /// Writes <paramref name="contents"/> to a temporary file created with mode 0600 and renames it over
    /// <paramref name="path"/>, so that the secret is never readable by others, not even for a moment, and
    /// a crash never leaves a half-written file behind.
    /// </summary>
    public static void WriteSecretAtomically(string path, string contents)
    {
        var temp = path + ".tmp";
        File.Delete(temp);
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, Share = FileShare.None };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = OwnerOnly;
        }

        using (var stream = new FileStream(temp, options))
        using (var writer = new StreamWriter(stream))
        {
            writer.Write(contents);
            writer.Flush();
            stream.Flush(flushToDisk: true);
        }

        File.Move(temp, path, overwrite: true);
    }

    /// <summary>Null when only the owner may read or write <paramref name="path"/>; otherwise why not.</summary>
    public static string? CheckOwnerOnly(string path)
    {
        if (OperatingSystem.IsWindows())
        {
            return null;
        }

        var mode = File.GetUnixFileMode(path);
        if ((mode & GroupOrOther) == 0)
        {
            return null;
        }

        return $"{path} has mode {Convert.ToString((int)mode, 8).PadLeft(4, '0')}: it holds a private key, so group and others must have no access; run 'chmod 600 {path}'";
    }
}

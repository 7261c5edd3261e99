using System;
using System.IO;
using System.Text;
using Microsoft.Build.Framework;
using Microsoft.Build.Utilities;

// Sets VER_FLG_WEAK on one named entry of an ELF64 little-endian file's .gnu.version_r (SHT_GNU_verneed) section.
public class MarkElfVersionRequirementWeak : Task
{
    private const uint ShtGnuVerneed = 0x6ffffffe;
    private const ushort VerFlagWeak = 0x2;

    [Required] public ITaskItem[] Files { get; set; } = Array.Empty<ITaskItem>();
    [Required] public string VersionName { get; set; } = "";

    public override bool Execute()
    {
        foreach (var item in Files)
        {
            var path = item.GetMetadata("FullPath");
            try
            {
                var bytes = File.ReadAllBytes(path);
                var outcome = MarkWeak(bytes);
                if (outcome == "marked") File.WriteAllBytes(path, bytes);
                Log.LogMessage(MessageImportance.Low, $"{path}: {VersionName} {outcome}");
            }
            catch (Exception e)
            {
                Log.LogError($"Could not edit the version requirements of {path}: {e.Message}");
            }
        }
        return !Log.HasLoggedErrors;
    }

    private string MarkWeak(byte[] elf)
    {
        if (elf.Length < 64 || elf[0] != 0x7f || elf[1] != (byte)'E' || elf[2] != (byte)'L' || elf[3] != (byte)'F')
            throw new InvalidDataException("not an ELF file");
        if (elf[4] != 2 || elf[5] != 1) throw new InvalidDataException("not a little-endian ELF64 file");

        long sectionTable = BitConverter.ToInt64(elf, 0x28);
        int sectionSize = BitConverter.ToUInt16(elf, 0x3a);
        int sectionCount = BitConverter.ToUInt16(elf, 0x3c);
        for (int s = 0; s < sectionCount; s++)
        {
            long header = sectionTable + (long)s * sectionSize;
            if (BitConverter.ToUInt32(elf, (int)header + 4) != ShtGnuVerneed) continue;

            long offset = BitConverter.ToInt64(elf, (int)header + 0x18);
            int linkedStrings = (int)BitConverter.ToUInt32(elf, (int)header + 0x28);
            long stringsHeader = sectionTable + (long)linkedStrings * sectionSize;
            long strings = BitConverter.ToInt64(elf, (int)stringsHeader + 0x18);

            long need = offset;
            while (true)
            {
                int auxCount = BitConverter.ToUInt16(elf, (int)need + 2);
                long aux = need + BitConverter.ToUInt32(elf, (int)need + 8);
                for (int a = 0; a < auxCount; a++)
                {
                    uint nameOffset = BitConverter.ToUInt32(elf, (int)aux + 8);
                    if (ReadString(elf, strings + nameOffset) == VersionName)
                    {
                        ushort flags = BitConverter.ToUInt16(elf, (int)aux + 4);
                        if ((flags & VerFlagWeak) != 0) return "already weak";
                        BitConverter.GetBytes((ushort)(flags | VerFlagWeak)).CopyTo(elf, (int)aux + 4);
                        return "marked";
                    }
                    uint nextAux = BitConverter.ToUInt32(elf, (int)aux + 12);
                    if (nextAux == 0) break;
                    aux += nextAux;
                }
                uint nextNeed = BitConverter.ToUInt32(elf, (int)need + 12);
                if (nextNeed == 0) break;
                need += nextNeed;
            }
        }
        return "not required";
    }

    private static string ReadString(byte[] elf, long start)
    {
        int end = (int)start;
        while (elf[end] != 0) end++;
        return Encoding.ASCII.GetString(elf, (int)start, end - (int)start);
    }
}

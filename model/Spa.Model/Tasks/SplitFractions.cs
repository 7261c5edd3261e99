using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;

namespace Spa.Model.Tasks;

/// <summary>
/// Assigns examples to train, validation and test by a hash of a stable key, so an example keeps its split however
/// rows are added, removed or reordered, and any tool can recompute it: the key's UTF-8 bytes are hashed with
/// SHA-256, the first 8 bytes read big-endian, shifted right by 11 and divided by 2^53, giving u in [0, 1);
/// u &lt; Train is train, u &lt; Train + Validation is validation, the rest is test.
/// </summary>
public sealed record SplitFractions
{
    /// <summary>80 % train, 10 % validation, 10 % test: for a file that has no split of its own.</summary>
    public static SplitFractions Default { get; } = new(0.8, 0.1);

    public SplitFractions(double train, double validation)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(train);
        ArgumentOutOfRangeException.ThrowIfNegative(validation);
        if (train + validation > 1) throw new ArgumentException($"train {train} and validation {validation} add up to more than 1");
        Train = train;
        Validation = validation;
    }

    public double Train { get; }
    public double Validation { get; }
    public double Test => 1 - Train - Validation;

    public TaskSplit Assign(string key)
    {
        var u = UnitInterval(key);
        return u < Train ? TaskSplit.Train : u < Train + Validation ? TaskSplit.Validation : TaskSplit.Test;
    }

    /// <summary>The key's position in [0, 1), exposed so that the rule can be checked against other implementations.</summary>
    public static double UnitInterval(string key)
    {
        var hash = SHA256.HashData(Encoding.UTF8.GetBytes(key));
        return (BinaryPrimitives.ReadUInt64BigEndian(hash) >> 11) * (1.0 / (1UL << 53));
    }
}

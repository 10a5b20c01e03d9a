//! The compression codecs as the writers use them: zstd's bulk contexts, which the vendored
//! zstd crate reuses per thread (vendor/zstd/PATCHES.md).

/// zstd's bulk contexts are reused per thread (vendor/zstd, `pool`): a reused context carries
/// nothing of its last user, though it keeps its workspace. A compressor that used level 19 and
/// a dictionary, dropped, then made again at level 1, writes what a fresh one writes (as after
/// one set to add checksums, and one that used level 1 and a dictionary); a decompressor that held a
/// dictionary, made again without one, refuses a frame that needs it and reads one that does
/// not; and many made and dropped in turn keep round-tripping.
#[test]
fn reused_zstd_contexts_carry_nothing_of_their_last_user() {
    use zstd::bulk::{Compressor, Decompressor};
    let data: Vec<u8> = (0..200_000u32)
        .flat_map(|i| format!("{{\"n\":{},\"host\":\"h{}\"}}\n", i, i % 97).into_bytes())
        .collect();
    let dict = b"{\"n\":,\"host\":\"h\"}\n".repeat(64);
    let fresh = std::thread::spawn({
        let data = data.clone();
        move || Compressor::new(1).unwrap().compress(&data).unwrap()
    })
    .join()
    .unwrap();
    let with_dict = {
        let mut c = Compressor::with_dictionary(19, &dict).unwrap();
        c.compress(&data[..10_000]).unwrap()
    };
    {
        let mut c = Compressor::new(1).unwrap();
        c.include_checksum(true).unwrap();
        c.compress(&data[..10_000]).unwrap();
    }
    let again = Compressor::new(1).unwrap().compress(&data).unwrap();
    assert_eq!(
        again, fresh,
        "a reused context kept its level or dictionary"
    );
    // One that compressed with a dictionary at a low level is small enough to be kept.
    {
        let mut c = Compressor::with_dictionary(1, &dict).unwrap();
        c.compress(&data[..10_000]).unwrap();
    }
    let again = Compressor::new(1).unwrap().compress(&data).unwrap();
    assert_eq!(again, fresh, "a reused context kept its dictionary");
    {
        let mut d = Decompressor::with_dictionary(&dict).unwrap();
        assert_eq!(d.decompress(&with_dict, 10_000).unwrap(), &data[..10_000]);
    }
    let mut d = Decompressor::new().unwrap();
    assert!(
        d.decompress(&with_dict, 10_000).is_err(),
        "a reused context kept its dictionary"
    );
    assert_eq!(d.decompress(&fresh, data.len()).unwrap(), data);
    drop(d);
    for level in [1, 3, -1, 9, 1] {
        let mut cs: Vec<Compressor> = (0..20).map(|_| Compressor::new(level).unwrap()).collect();
        let mut ds: Vec<Decompressor> = (0..20).map(|_| Decompressor::new().unwrap()).collect();
        for (c, d) in cs.iter_mut().zip(ds.iter_mut()) {
            let z = c.compress(&data[..50_000]).unwrap();
            assert_eq!(d.decompress(&z, 50_000).unwrap(), &data[..50_000]);
        }
    }
}

/// A decompressor makes its context when first used (a Parquet writer's codec never
/// decompresses): what is set before that use holds. A dictionary given after `new`, and a
/// prepared one, apply to the first frame; without one, that frame is refused.
#[test]
fn a_decompressor_set_up_before_its_first_use_keeps_its_setup() {
    use zstd::bulk::{Compressor, Decompressor};
    use zstd::dict::DecoderDictionary;
    let data: Vec<u8> = (0..100_000u32)
        .flat_map(|i| format!("{{\"n\":{i}}}\n").into_bytes())
        .collect();
    let dict = b"{\"n\":}\n".repeat(64);
    let with_dict = Compressor::with_dictionary(3, &dict)
        .unwrap()
        .compress(&data)
        .unwrap();
    let mut d = Decompressor::new().unwrap();
    d.set_dictionary(&dict).unwrap();
    assert_eq!(d.decompress(&with_dict, data.len()).unwrap(), data);
    let prepared = DecoderDictionary::copy(&dict);
    let mut d = Decompressor::with_prepared_dictionary(&prepared).unwrap();
    assert_eq!(d.decompress(&with_dict, data.len()).unwrap(), data);
    // Without the dictionary, the same frame is refused.
    let mut d = Decompressor::new().unwrap();
    assert!(d.decompress(&with_dict, data.len()).is_err());
}

import { fitSections, ISectionNeed } from '../sectionSizes';

function section(content: number, floor = content, extra: Partial<ISectionNeed> = {}): ISectionNeed {
  return { expanded: true, content, floor, whole: false, firm: false, ...extra };
}

const rounded = (sizes: number[]): number[] => sizes.map(size => Math.round(size));

describe('fitSections', () => {
  it('gives each section its content when all fit, and the rest to the last one', () => {
    const sizes = fitSections([section(100), section(50), section(30)], 300);
    expect(rounded(sizes)).toEqual([100, 50, 150]);
  });

  it('gives a whole section all of its content before the lists share the rest', () => {
    // flavors, start, kernels (empty), jobs (30 rows), timeline
    const sizes = fitSections(
      [
        section(400, 40),
        section(170, 170, { whole: true }),
        section(30),
        section(2000, 124),
        section(300, 34)
      ],
      480
    );
    expect(rounded(sizes)).toEqual([78, 170, 30, 124, 78]);
    expect(sizes.reduce((a, b) => a + b)).toBeCloseTo(480);
  });

  it('lets a small section keep its content and shares what it leaves', () => {
    const sizes = fitSections([section(60, 20), section(500, 20), section(500, 20)], 400);
    expect(rounded(sizes)).toEqual([60, 170, 170]);
  });

  it('gives each list at least one whole row', () => {
    const sizes = fitSections([section(1000, 150), section(1000, 40), section(1000, 40)], 300);
    expect(rounded(sizes)).toEqual([150, 75, 75]);
  });

  it('gives nothing to collapsed sections and keeps empty ones small', () => {
    const sizes = fitSections(
      [section(300, 100, { expanded: false }), section(40), section(200, 60)],
      500
    );
    expect(rounded(sizes)).toEqual([0, 40, 460]);
  });

  it('gives the floors that hold controls before the others', () => {
    // at 1280 × 720 with 30 jobs: the Start form, one job row and the time span select
    // stay whole; the flavor cards and the kernels share what little is left
    const sizes = fitSections(
      [
        section(682, 32),
        section(172, 172, { whole: true }),
        section(39),
        section(4060, 192, { firm: true }),
        section(448, 40, { firm: true })
      ],
      466
    );
    expect(rounded(sizes)).toEqual([28, 172, 34, 192, 40]);
  });

  it('shrinks the floors alike when even they do not fit', () => {
    const sizes = fitSections(
      [section(100, 100, { whole: true }), section(500, 100), section(500, 50)],
      250
    );
    expect(rounded(sizes)).toEqual([100, 100, 50]);
    const tiny = fitSections(
      [section(100, 100, { whole: true }), section(500, 100), section(500, 50)],
      175
    );
    expect(rounded(tiny)).toEqual([100, 50, 25]);
  });

  it('lays out nothing when nothing is expanded or there is no room', () => {
    expect(fitSections([section(10, 10, { expanded: false })], 100)).toEqual([0]);
    expect(fitSections([section(10)], 0)).toEqual([0]);
  });
});
